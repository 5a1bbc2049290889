"""CPU step time when the loop reads each step's values at once against reading them at the progress lines.
A one-off experiment, kept beside its record (step_reads.json) on docs/results/cpu_performance.md.

    python docs/results/cpu_performance/step_reads.py                     # GhostNet at width 0.1, small input, 32 px, batch 8
    python docs/results/cpu_performance/step_reads.py --modes graph --steps 200 --rounds 5

A small network at a small batch, where waiting for the device after every step is a visible share of it: the
train step of train.py (forward, loss, backward, the finiteness check, SGD-momentum; src/kernels' CPU pass on)
on a fixed batch, `--steps` steps per timing. "each step": the loss, the correct count and the updated flag read
as Python numbers after every step, as the epoch loop did; "every N": the outputs kept on the device and read
every `--log_interval` steps through src/engine/step_values.py, as it does now. Both in one process on one compiled
step, alternating for `--rounds` rounds (this host's speed drifts); medians of the rounds' ms per step, and of the
ms per step spent waiting in the reads (what the device still had to do when the values were asked for, plus the
copies).
"""
import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", default="ghostnet_050")
    parser.add_argument("--width", type=float, default=0.1, help="the model's width multiplier (a tiny network)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200, help="steps per timing")
    parser.add_argument("--log_interval", type=int, default=50, help="steps between reads in the deferred loop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=("graph", "pynative"), default=["graph", "pynative"])
    parser.add_argument("--json", help="also write the measurements to this file")
    return parser.parse_args(argv)


def build_step(args):
    """train.py's TrainStep on `args.model` (1 channel, 10 classes, small input) and a fixed batch."""
    import mindspore as ms
    import numpy as np
    from src.config import Config
    from src.engine.loss import SoftTargetCrossEntropy
    from src.engine.lr_schedule import build_lr_schedule
    from src.engine.optim import create_optimizer
    from src.engine.train_step import TrainStep
    from src.models import create_model
    from src.configured_model import for_this_device

    cfg = Config(model=args.model, image_size=args.image_size, optimizer="sgd", lr=0.01, epochs=1)
    net = create_model(args.model, num_classes=10, in_channels=1, small_input=True, width=args.width)
    net = for_this_device(net, cfg)
    optimizer = create_optimizer(cfg, net.trainable_params(), build_lr_schedule(cfg, 100000))
    step = TrainStep(net, SoftTargetCrossEntropy(0.1), optimizer)
    step.set_train(True)
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.standard_normal((args.batch_size, 1, args.image_size, args.image_size), np.float32))
    labels = ms.Tensor(np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch_size)])
    return step, images, labels


def each_step(step, images, labels, steps, _) -> float:
    """-> seconds spent in the reads."""
    waited = 0.0
    for _ in range(steps):
        loss, correct, updated = step(images, labels)
        start = time.perf_counter()
        float(loss.asnumpy()), int(correct.asnumpy()), bool(updated.asnumpy())  # what the loop did after each step
        waited += time.perf_counter() - start
    return waited


def every_interval(step, images, labels, steps, interval) -> float:
    """-> seconds spent in the reads."""
    from src.engine.step_values import PendingSteps
    pending, waited = PendingSteps(), 0.0
    for i in range(steps):
        pending.add(i, step(images, labels), timed=True)
        if (i + 1) % interval == 0 or i + 1 == steps:
            start = time.perf_counter()
            pending.read()
            waited += time.perf_counter() - start
    return waited


def measure(args, mode):
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    step, images, labels = build_step(args)
    each_step(step, images, labels, 3, None)  # compile (graph mode) and warm up
    loops = {"each step": each_step, f"every {args.log_interval}": every_interval}
    times = {label: [] for label in loops}
    waits = {label: [] for label in loops}
    for _ in range(args.rounds):
        for label, loop in loops.items():
            start = time.perf_counter()
            waited = loop(step, images, labels, args.steps, args.log_interval)
            times[label].append((time.perf_counter() - start) * 1e3 / args.steps)
            waits[label].append(waited * 1e3 / args.steps)
    return {label: {"median_ms": statistics.median(times[label]), "rounds_ms": times[label],
                    "read_ms": statistics.median(waits[label]), "rounds_read_ms": waits[label]} for label in loops}


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, REPO)
    import src  # noqa: F401  (before mindspore: CPU kernel selection)
    print(f"{args.model} at width {args.width}, small input, {args.image_size} px, batch {args.batch_size}, "
          f"{args.steps} steps per timing, median of {args.rounds} alternating rounds; {os.cpu_count()} cores",
          flush=True)
    before, after = "each step", f"every {args.log_interval}"
    print(f"| mode | ms per step, reading {before} (of it in reads) | reading {after} (of it in reads) "
          f"| {before} / {after} |\n|---|---|---|---|", flush=True)
    results = {}
    for mode in args.modes:
        result = results[mode] = measure(args, mode)
        print(f"| {mode} | {result[before]['median_ms']:.2f} ({result[before]['read_ms']:.3f}) "
              f"| {result[after]['median_ms']:.2f} ({result[after]['read_ms']:.3f}) "
              f"| {result[before]['median_ms'] / result[after]['median_ms']:.3f} |", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
