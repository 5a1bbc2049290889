"""CPU speed of GhostNet on MindSpore next to PyTorch (timm, eager) and ONNX Runtime, measured in one run.

    python scripts/benchmark.py                                   # ghostnet_100, every workload, every runtime
    python scripts/benchmark.py --workloads train_32 --repeats 10 --no-reference
    python scripts/benchmark.py --kernels both                    # MindSpore with and without src/kernels' pass
    python scripts/benchmark.py --rounds 3                        # every runtime 3 times, round-robin: the README table

Workloads: `infer_224` (batch 1, 3 x 224 x 224, 1000 classes: latency in graph mode of the network as trained and of
its inference form, BN folded into the convs as export.py does (then, with the kernels, ReLUs into them), and of
the exported MINDIR through nn.GraphCell; the MINDIR always holds MindSpore's own ops, not src/kernels), `train_224`
(batch 32, 3 x 224 x 224, 1000 classes: training images/s), `train_32` (batch 128, 1 x 32 x 32, 10 classes: the
Fashion-MNIST main job's setting) and `train_28_small` (batch 128, 1 x 28 x 28, the small-input network of the
Fashion-MNIST recipe; MindSpore only: timm has no small-input GhostNet). A training step is forward, label-smoothed
cross-entropy, backward and an SGD-momentum update, on a fixed batch (no data pipeline).

Every (runtime, workload) runs in a fresh process: timings are medians over `--repeats` runs after `--warmup`
untimed ones (the first MindSpore call, which compiles the graph, is reported as compile time); peak memory is
the process's resident high-water mark (framework included). This host's speed drifts by up to 1.5x over minutes,
so `--rounds` repeats the whole set round-robin and keeps each runtime's median round. The PyTorch / ONNX Runtime
half runs under the reference environment (.venv-torch, `WITH_TORCH=1 bash scripts/setup.sh`; or TORCH_PYTHON)
when there is one. Ratios are MindSpore over the reference: for latency below 1 means MindSpore is faster, for
images/s above 1.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import reference_env  # scripts/reference_env: the PyTorch side's interpreter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = {
    "infer_224": dict(batch=1, channels=3, size=224, classes=1000, train=False),
    "train_224": dict(batch=32, channels=3, size=224, classes=1000, train=True),
    "train_32": dict(batch=128, channels=1, size=32, classes=10, train=True),
    "train_28_small": dict(batch=128, channels=1, size=28, classes=10, train=True, small_input=True),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", default="ghostnet_100", help="registered here and in timm")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every runtime this many times, round-robin, and keep the median round")
    parser.add_argument("--kernels", choices=("on", "off", "both"), default="on",
                        help="MindSpore with the CPU kernels of src/kernels (its accelerate pass), without, or both")
    parser.add_argument("--no-reference", action="store_true", help="skip PyTorch and ONNX Runtime")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of one MindSpore measurement
    return parser.parse_args(argv)


# ---------------------------------------------------------------- MindSpore worker (one measurement per process)

def _median_seconds(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def mindspore_worker(spec):
    sys.path.insert(0, REPO)
    import numpy as np
    import src  # noqa: F401  (before mindspore: caps oneDNN's ISA)
    import mindspore as ms
    from src.config import Config
    from src.deploy import prepare_for_inference
    from src.engine.loss import SoftTargetCrossEntropy
    from src.engine.lr_schedule import build_lr_schedule
    from src.engine.optim import create_optimizer
    from src.engine.train_step import TrainStep
    from src.kernels import accelerate, kernels_usable
    from src.models import create_model

    work = WORKLOADS[spec["workload"]]
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((work["batch"], work["channels"], work["size"], work["size"]))
                  .astype(np.float32))
    net = create_model(spec["model"], num_classes=work["classes"], in_channels=work["channels"],
                       small_input=work.get("small_input", False))
    kernels = spec["kernels"] == "on" and kernels_usable()
    result = {"custom_kernels": kernels, "version": ms.__version__}
    if spec["runtime"] == "folded":  # the inference form: BN folded on the plain network, then the kernels
        prepare_for_inference(net, x)
    if kernels:
        accelerate(net, x[:1])
    if work["train"]:
        labels = np.eye(work["classes"], dtype=np.float32)[rng.integers(0, work["classes"], work["batch"])]
        cfg = Config(optimizer="sgd", momentum=0.9, lr=0.01, epochs=1, warmup_epochs=0)
        optimizer = create_optimizer(cfg, net.trainable_params(), build_lr_schedule(cfg, 1000))
        step = TrainStep(net, SoftTargetCrossEntropy(0.1), optimizer)
        step.set_train(True)
        labels = ms.Tensor(labels)

        def run():
            step(x, labels)[0].asnumpy()
        start = time.perf_counter()
        run()
        result["compile_s"] = time.perf_counter() - start
        seconds = _median_seconds(run, spec["repeats"], spec["warmup"])
        result.update(images_per_s=work["batch"] / seconds, step_ms=seconds * 1e3)
    elif spec["runtime"] in ("mindspore", "folded"):  # graph mode: the network as trained, or BN folded
        net.set_train(False)
        start = time.perf_counter()
        net(x).asnumpy()
        result["compile_s"] = time.perf_counter() - start
        result["latency_ms"] = _median_seconds(lambda: net(x).asnumpy(), spec["repeats"], spec["warmup"]) * 1e3
    else:  # the deployable file: BN folded, exported to MINDIR (always plain convs), loaded back as a GraphCell
        with tempfile.TemporaryDirectory() as tmp:
            prepare_for_inference(net, x)
            ms.export(net, x, file_name=os.path.join(tmp, "model"), file_format="MINDIR")
            graph = ms.nn.GraphCell(ms.load(os.path.join(tmp, "model.mindir")))
        start = time.perf_counter()
        graph(x).asnumpy()
        result["compile_s"] = time.perf_counter() - start
        result["latency_ms"] = _median_seconds(lambda: graph(x).asnumpy(), spec["repeats"], spec["warmup"]) * 1e3
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


# ---------------------------------------------------------------- driver

def _run(command, env=None):
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return json.loads(lines[-1])


def _value(workload, result):
    return result["images_per_s"] if WORKLOADS[workload]["train"] else result["latency_ms"]


def measure(args):
    """[(runtime label, workload, result dict)] for every requested pair. Each measurement is a fresh process; with
    `--rounds` N every pair is measured N times, round-robin (a slow spell of the host hits every runtime alike),
    and the round with the median figure is kept (its figures of every round under "rounds")."""
    torch_python = None if args.no_reference else reference_env.interpreter()
    torch_env = reference_env.environment()
    jobs = []
    for workload in args.workloads:
        work = WORKLOADS[workload]
        for kernels in (("on", "off") if args.kernels == "both" else (args.kernels,)):
            suffix = "" if args.kernels != "both" else ", custom kernels" if kernels == "on" else ", oneDNN only"
            jobs.append((f"MindSpore graph{suffix}", workload, "mindspore", kernels))
            if not work["train"]:
                jobs.append((f"MindSpore graph, BN folded{suffix}", workload, "folded", kernels))
        if not work["train"]:
            jobs.append(("MindSpore MINDIR (BN folded)", workload, "mindir", "off"))
        if torch_python and not work.get("small_input"):  # timm's GhostNet has no small-input setting
            jobs.append(("PyTorch eager", workload, "pytorch", None))
            if not work["train"]:
                jobs.append(("ONNX Runtime", workload, "onnxruntime", None))
    results = {job: [] for job in jobs}
    for round_index in range(args.rounds):
        for job in jobs:
            label, workload, runtime, kernels = job
            if runtime in ("pytorch", "onnxruntime"):
                command = [torch_python, os.path.join(REPO, "scripts", "benchmark_torch.py"), "--runtime", runtime,
                           "--workload", json.dumps(WORKLOADS[workload]), "--model", args.model,
                           "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
                result = _run(command, torch_env)
            else:
                spec = dict(runtime=runtime, workload=workload, model=args.model, kernels=kernels,
                            repeats=args.repeats, warmup=args.warmup)
                result = _run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)])
            print(f"  round {round_index + 1} {workload:10s} {label:28s} {json.dumps(result)}", file=sys.stderr,
                  flush=True)
            results[job].append(result)
    rows = []
    for job in jobs:
        label, workload = job[:2]
        good = sorted((r for r in results[job] if "error" not in r), key=lambda r: _value(workload, r))
        if not good:
            rows.append((label, workload, results[job][-1]))
            continue
        kept = dict(good[(len(good) - 1) // 2])
        if args.rounds > 1:
            kept["rounds"] = [round(_value(workload, r), 2) for r in good]
        rows.append((label, workload, kept))
    return rows


def _machine():
    from src.runtime import cpu_model
    return f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def table(rows, model):
    """Markdown: one line per (workload, runtime), with the ratio to PyTorch eager and to ONNX Runtime."""
    reference = {(w, label): r for label, w, r in rows}
    lines = [f"| workload ({model}) | runtime | latency ms / train img/s | vs PyTorch | vs ONNX Runtime "
             f"| compile s | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for label, workload, result in rows:
        if "error" in result:
            lines.append(f"| {workload} | {label} | failed: {result['error']} | | | | |")
            continue
        train = WORKLOADS[workload]["train"]
        value = _value(workload, result)
        cells = []
        for ref_label in ("PyTorch eager", "ONNX Runtime"):
            ref = reference.get((workload, ref_label))
            if ref is None or "error" in ref or ref_label == label:
                cells.append("")
                continue
            cells.append(f"{value / _value(workload, ref):.2f}x")
        compile_s = f"{result['compile_s']:.1f}" if "compile_s" in result else ""
        lines.append(f"| {workload} | {label} | {value:.1f} {'img/s' if train else 'ms'} | {cells[0]} | "
                     f"{cells[1]} | {compile_s} | {result['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(mindspore_worker(json.loads(args.worker))))
        return
    print(f"machine: {_machine()}; every runtime uses all {os.cpu_count()} cores; medians of {args.repeats} runs "
          f"after {args.warmup} warm-up; median of {args.rounds} round(s)", flush=True)
    rows = measure(args)
    print(table(rows, args.model))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([{"runtime": label, "workload": w, **r} for label, w, r in rows], f, indent=2)


if __name__ == "__main__":
    main()
