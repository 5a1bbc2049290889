"""What the network costs a data-parallel GhostNet run: 2 simulated hosts (scripts/local_cluster.py), one rank each
launched by msrun on every host, the hosts' links capped by tc tbf; needs root.

    python3 scripts/benchmarks/multi_host_network.py                                  # both shapes, every rate, accuracy check
    python3 scripts/benchmarks/multi_host_network.py --shapes main --rates unlimited 100mbit --steps 3 --accuracy_steps 0

Per shape (`main`: the Fashion-MNIST main job's config, 32 px, 1 channel, 10 classes, batch 128 per rank; `224`:
3 x 224 x 224, 1000 classes, `--batch_224` per rank) and per link rate, on fixed random batches, medians over
`--steps` of:
- the training step (src/engine/train_step.py's TrainStep with the repo's gradient reducer) and the same step
  without the gradient all-reduce: their difference over the first is the communication share;
- the all-reduce alone, on tensors of the gradients' shapes, as the repo reduces them (DistributedGradReducer, one
  AllReduce per gradient, all with fusion id 1), with a fusion id per gradient, with all_reduce_fusion_config
  buckets, as one flat buffer (one AllReduce), and as one flat float16 buffer;
against the bytes a ring all-reduce moves per rank and step, 2 (N - 1) / N x gradient bytes, and their time at the
rate. Then (`--accuracy_steps` > 0, main shape) the same run from the same weights and batches of Fashion-MNIST with
float32 and with float16 gradient all-reduce: losses, final weights and test top-1 compared.
Every figure is taken in one run, steps interleaved, so ratios hold under the machine's load (printed with them).
A projection to servers of 8 devices on faster links from the byte model is `--project` (no measurement).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

MAIN_CONFIG = os.path.join(REPO, "configs", "ghostnet", "ghostnet_100_fashion_mnist.yaml")
RATES = ("unlimited", "10gbit", "1gbit", "100mbit")
SPEC_VARIABLE = "BENCHMARK_CLUSTER_SPEC"  # what a worker measures (JSON), from the orchestrator through msrun
MASTER_PORT = 8118  # inside the cluster's own namespaces: no clash with anything else on the machine


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--shapes", nargs="+", choices=("main", "224"), default=["main", "224"])
    parser.add_argument("--rates", nargs="*", default=list(RATES), help="tc rates, or 'unlimited'")
    parser.add_argument("--steps", type=int, default=5, help="timed repeats of each measurement per rate")
    parser.add_argument("--batch_224", type=int, default=8, help="per-rank batch at 224 px")
    parser.add_argument("--accuracy_steps", type=int, default=40,
                        help="float32 vs float16 all-reduce: training steps of each run (0: skip)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one shape's launch")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--project", help="print the projection of a --json record and exit")
    parser.add_argument("--compute_ms", type=float, nargs="+", default=[5.0, 20.0],
                        help="projection: assumed accelerator compute per step (batch 128 at 224 px)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------- worker (one rank, under msrun)

class _Control:
    """Rank 0 asks the orchestrator for a link rate through files in a shared folder and waits until it is set."""

    def __init__(self, folder, rank):
        self.folder, self.rank, self.count = folder, rank, 0

    def set_rate(self, rate):
        from src.distributed import sum_across_ranks

        self.count += 1
        if self.rank == 0:
            with open(os.path.join(self.folder, f"want_{self.count}"), "w", encoding="utf-8") as f:
                f.write(rate)
            while not os.path.exists(os.path.join(self.folder, f"set_{self.count}")):
                time.sleep(0.05)
        sum_across_ranks([0.0])  # the other ranks wait here until rank 0 has the rate


def _float16_reducer(degree):
    """Gradients cast to float16 for the all-reduce (half the bytes) and back to float32 after it."""
    import mindspore as ms
    import mindspore.nn as nn
    import mindspore.ops as ops

    class Float16GradReducer(nn.Cell):
        def __init__(self):
            super().__init__()
            self.allreduce = ops.AllReduce()
            self.scale = 1.0 / degree

        def construct(self, grads):
            reduced = ()
            for grad in grads:
                reduced = reduced + (self.allreduce(grad.astype(ms.float16)).astype(ms.float32) * self.scale,)
            return reduced

    return Float16GradReducer()


def _allreduce_variants(params, degree):
    """{name: cell(grads) -> reduced grads} over stand-in Parameters of the gradients' shapes."""
    import mindspore as ms
    import mindspore.nn as nn
    import mindspore.ops as ops
    import numpy as np

    def stand_ins(fusion_ids):
        made = []
        for i, (p, fusion) in enumerate(zip(params, fusion_ids)):
            q = ms.Parameter(ms.Tensor(np.zeros(p.shape, np.float32)), name=f"stand_in_{i}")
            q.comm_fusion = fusion
            made.append(q)
        return made

    class Flat(nn.Cell):
        def __init__(self, dtype):
            super().__init__()
            self.allreduce, self.dtype, self.scale = ops.AllReduce(), dtype, 1.0 / degree

        def construct(self, grads):
            flat = ops.concat([g.reshape(-1) for g in grads]).astype(self.dtype)
            return (self.allreduce(flat).astype(ms.float32) * self.scale,)

    n = len(params)
    variants = {"as trained (fusion id 1 each)": nn.DistributedGradReducer(stand_ins([1] * n), True, degree),
                "fusion id per gradient": nn.DistributedGradReducer(stand_ins(range(1, n + 1)), True, degree)}
    ms.set_auto_parallel_context(all_reduce_fusion_config=[n // 4, n // 2, 3 * n // 4])  # built after the step
    variants["all_reduce_fusion_config, 4 buckets"] = nn.DistributedGradReducer(stand_ins([1] * n), True, degree)
    variants["one flat buffer"] = Flat(ms.float32)
    variants["one flat buffer, float16"] = Flat(ms.float16)
    variants["float16 per gradient"] = _float16_reducer(degree)
    return variants


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    (out[0] if isinstance(out, (tuple, list)) else out).asnumpy()
    return time.perf_counter() - start


def _snapshot(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def _restore(cell, snapshot):
    import mindspore as ms

    for p in cell.get_parameters():
        p.set_data(ms.Tensor(snapshot[p.name]))


def _accuracy_check(cfg, dist, network, start, step32, step16, steps, log):
    """The same `steps` Fashion-MNIST batches from the same `start` state, float32 vs float16 all-reduce."""
    import numpy as np

    from src.data import create_dataset
    from src.engine.epoch_data import EpochData
    from src.engine.evaluate import evaluate

    data = EpochData(cfg, dist)
    batches = []
    for images, labels in data.epoch(0).create_tuple_iterator(num_epochs=1):
        batches.append((images, labels))
        if len(batches) == steps:
            break
    val_data, _ = create_dataset(cfg, cfg.val_split, training=False, num_shards=dist.world_size,
                                 shard_id=dist.rank, class_names=data.info.class_names)
    runs = {}  # a second float32 run from the same start shows how far two identical runs drift on this CPU
    for name, step in (("float32", step32), ("float32 again", step32), ("float16", step16)):
        _restore(step32, start)
        step.set_train()
        losses = [float(step(images, labels)[0].asnumpy()) for images, labels in batches]
        weights = {p.name: p.asnumpy().copy() for p in network.trainable_params()}
        report = evaluate(network, val_data, data.info.num_classes, across_ranks=True)
        runs[name] = dict(losses=losses, weights=weights, top1=report["top1"], val_loss=report["loss"])
        log(f"accuracy check, {name} all-reduce: last loss {losses[-1]:.4f}, test top-1 {report['top1']:.2f}")
    reference = runs["float32"]["weights"]
    moved = np.sqrt(sum(float(((reference[k] - start[k]) ** 2).sum()) for k in reference))
    result = {"steps": steps, "distance_moved": moved}
    for name, run in runs.items():
        result[name] = {"losses": run["losses"], "top1": run["top1"], "val_loss": run["val_loss"],
                        "weight_difference": np.sqrt(sum(float(((run["weights"][k] - reference[k]) ** 2).sum())
                                                         for k in reference))}
    return result


def worker(spec):
    import src  # noqa: F401  (first: selects the CPU kernels before mindspore loads)
    import mindspore as ms
    import numpy as np

    from src.config import load_config
    from src.data.dataset import DatasetInfo
    from src.device import setup_context
    from src.distributed import init_distributed, sum_across_ranks
    from src.engine.loss import SoftTargetCrossEntropy
    from src.engine.lr_schedule import build_lr_schedule
    from src.engine.optim import create_optimizer
    from src.engine.train_step import TrainStep, gradient_reducer
    from src.configured_model import for_this_device, model_for_data
    from src.analysis.profile import count_params

    overrides = {"image_size": 224, "batch_size": spec["batch_224"]} if spec["shape"] == "224" else {}
    cfg = load_config(MAIN_CONFIG, {"ema": False, **overrides})
    device = setup_context(cfg, training=True)
    dist = init_distributed(device)
    control = _Control(spec["control"], dist.rank)
    log = (lambda text: print(text, flush=True)) if dist.is_main else (lambda text: None)
    classes, channels = (1000, 3) if spec["shape"] == "224" else (10, 1)
    info = DatasetInfo(classes, tuple(map(str, range(classes))), 0, channels, (0.5,) * channels, (0.25,) * channels)
    network = for_this_device(model_for_data(cfg, info), cfg)
    params = network.trainable_params()
    gradient_bytes = float32_gradient_bytes(network)
    optimizer = create_optimizer(cfg, params, build_lr_schedule(cfg, 1000))
    loss_fn = SoftTargetCrossEntropy(cfg.label_smoothing)
    with_reduce = TrainStep(network, loss_fn, optimizer, grad_reducer=gradient_reducer(dist, optimizer.parameters))
    without_reduce = TrainStep(network, loss_fn, optimizer)
    rng = np.random.default_rng(dist.rank)
    images = ms.Tensor(rng.standard_normal((cfg.batch_size, channels, cfg.image_size, cfg.image_size), np.float32))
    labels = ms.Tensor(np.eye(classes, dtype=np.float32)[rng.integers(0, classes, cfg.batch_size)])
    grads = tuple(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32)) for p in params)
    variants = _allreduce_variants(params, dist.world_size)
    initial = _snapshot(with_reduce)

    compile_start = time.perf_counter()
    for step in (with_reduce, without_reduce):
        step.set_train()
        _timed(lambda: step(images, labels))
    for cell in variants.values():
        _timed(lambda: cell(grads))
    log(f"{spec['shape']}: {len(params)} gradients, {gradient_bytes / 1e6:.2f} MB float32; compiled in "
        f"{time.perf_counter() - compile_start:.0f} s")
    exact = variants["one flat buffer"](grads)[0].asnumpy()
    half = variants["one flat buffer, float16"](grads)[0].asnumpy()
    float16_error = float(np.abs(half - exact).max() / np.abs(exact).max())

    rows = []
    for rate in spec["rates"]:
        control.set_rate(rate)
        load_before = os.getloadavg()[0]
        times = {"step": [], "step without all-reduce": [], **{name: [] for name in variants}}
        for _ in range(spec["steps"]):
            sum_across_ranks([0.0])  # start together
            times["step"].append(_timed(lambda: with_reduce(images, labels)))
            sum_across_ranks([0.0])  # start together
            times["step without all-reduce"].append(_timed(lambda: without_reduce(images, labels)))
            for name, cell in variants.items():
                sum_across_ranks([0.0])  # start together
                times[name].append(_timed(lambda: cell(grads)))
        row = {"rate": rate, "load_1min": [load_before, os.getloadavg()[0]],
               **{name: statistics.median(values) for name, values in times.items()}}
        rows.append(row)
        log(f"{spec['shape']} @ {rate}: step {1e3 * row['step']:.0f} ms, without all-reduce "
            f"{1e3 * row['step without all-reduce']:.0f} ms, all-reduce {1e3 * row[next(iter(variants))]:.0f} ms")
    control.set_rate("unlimited")

    record = {"shape": spec["shape"], "batch_per_rank": cfg.batch_size, "image_size": cfg.image_size,
              "channels": channels, "classes": classes, "ranks": dist.world_size, "params": count_params(network),
              "gradient_bytes": gradient_bytes, "float16_flat_max_relative_error": float16_error, "rows": rows}
    if spec["shape"] == "main" and spec["accuracy_steps"]:
        step16 = TrainStep(network, loss_fn, optimizer, grad_reducer=_float16_reducer(dist.world_size))
        record["accuracy"] = _accuracy_check(cfg, dist, network, initial, with_reduce, step16,
                                             spec["accuracy_steps"], log)
    if dist.is_main:
        with open(os.path.join(spec["control"], "result.json"), "w", encoding="utf-8") as f:
            json.dump(record, f)


# -------------------------------------------------------------------------- orchestrator (the root namespace)

def run_shape(shape, args) -> dict:
    """One msrun per simulated host; rate requests from rank 0 are applied to every host's link."""
    from scripts.local_cluster import LocalCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        sys.exit(f"cannot make a local cluster: {reason}")
    with tempfile.TemporaryDirectory(prefix="benchmark_cluster_") as control, LocalCluster(hosts=2) as cluster:
        spec = json.dumps({"shape": shape, "rates": args.rates, "steps": args.steps, "batch_224": args.batch_224,
                           "accuracy_steps": args.accuracy_steps, "control": control})
        launches = []
        for k in range(cluster.size):
            log_dir = os.path.join(control, f"host{k}")
            launches.append(cluster.popen(k, [
                "msrun", f"--worker_num={cluster.size}", "--local_worker_num=1",
                f"--master_addr={cluster.hosts[0].address}", f"--master_port={MASTER_PORT}", f"--node_rank={k}",
                f"--log_dir={log_dir}", "--join=True", os.path.abspath(__file__)],
                env={**os.environ, SPEC_VARIABLE: spec}, cwd=REPO, stdout=open(os.path.join(control, f"msrun{k}.log"), "w"), stderr=subprocess.STDOUT))
        deadline, answered, shown = time.monotonic() + args.timeout, 0, 0
        worker_log = os.path.join(control, "host0", "worker_0.log")
        while any(p.poll() is None for p in launches):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{shape}: no result after {args.timeout:.0f} s; see the log:\n"
                                   + _tail(worker_log))
            shown = _echo_progress(worker_log, shown)
            want = os.path.join(control, f"want_{answered + 1}")
            if os.path.exists(want):
                with open(want, encoding="utf-8") as f:
                    rate = f.read()
                cluster.limit_rate(None if rate == "unlimited" else rate)
                answered += 1
                open(os.path.join(control, f"set_{answered}"), "w").close()
            time.sleep(0.1)
        _echo_progress(worker_log, shown)
        result = os.path.join(control, "result.json")
        if not os.path.exists(result):
            raise RuntimeError(f"{shape}: the workers ended without a result:\n" + _tail(worker_log)
                               + _tail(os.path.join(control, "msrun0.log")))
        with open(result, encoding="utf-8") as f:
            return json.load(f)


def _tail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"({path} missing)"


def _echo_progress(path, shown):
    """Print the worker's own lines (not MindSpore's log lines) that appeared since the last call."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return shown
    for line in lines[shown:]:
        if not line.startswith("[") and line.strip():
            print("  " + line.rstrip(), flush=True)
    return len(lines)


def _rate_bits(rate):
    from scripts.local_cluster import _rate_bits as bits

    return None if rate == "unlimited" else bits(rate)


def float32_gradient_bytes(network) -> int:
    """Bytes of one step's gradients: one float32 per trainable parameter."""
    from src.analysis.profile import count_params

    return 4 * count_params(network)


def ring_bytes(gradient_bytes, ranks):
    """Bytes each rank sends (and receives) in a ring all-reduce: reduce-scatter then all-gather."""
    return 2 * (ranks - 1) / ranks * gradient_bytes


def _print_rate_table(record, sent):
    """One row per link rate: step times, the all-reduce variants, the byte model and the load."""
    variants = [k for k in record["rows"][0] if k not in ("rate", "load_1min", "step",
                                                          "step without all-reduce")]
    print("| link | wire time of the ring bytes (ms) | step (ms) | step without all-reduce (ms) | "
          "communication share | " + " | ".join(f"all-reduce: {v} (ms)" for v in variants) +
          " | effective Gbit/s (as trained) | load (1 min) |")
    print("|" + "---|" * (7 + len(variants)))
    for row in record["rows"]:
        bits = _rate_bits(row["rate"])
        wire = f"{sent * 8 / bits * 1e3:.1f}" if bits else "-"
        share = (row["step"] - row["step without all-reduce"]) / row["step"]
        effective = sent * 8 / row[variants[0]] / 1e9
        print(f"| {row['rate']} | {wire} | {1e3 * row['step']:.0f} | {1e3 * row['step without all-reduce']:.0f} "
              f"| {100 * share:.0f}% | " + " | ".join(f"{1e3 * row[v]:.0f}" for v in variants) +
              f" | {effective:.2f} | {row['load_1min'][0]:.1f} -> {row['load_1min'][1]:.1f} |")
    print(f"float16 flat all-reduce vs float32: max error {record['float16_flat_max_relative_error']:.1e} of "
          f"the largest value")


def print_tables(records):
    for record in records:
        sent = ring_bytes(record["gradient_bytes"], record["ranks"])
        print(f"\n{record['shape']}: ghostnet_100, {record['image_size']} px, {record['channels']} channel(s), "
              f"{record['classes']} classes, batch {record['batch_per_rank']} per rank, {record['ranks']} hosts x "
              f"1 rank; {record['params']:,} parameters = {record['gradient_bytes'] / 1e6:.2f} MB float32 "
              f"gradients; ring all-reduce sends {sent / 1e6:.2f} MB per rank and step")
        if record["rows"]:
            _print_rate_table(record, sent)
        if "accuracy" in record:
            acc = record["accuracy"]
            print(f"accuracy check ({acc['steps']} steps of Fashion-MNIST, same start and batches; weights "
                  f"moved {acc['distance_moved']:.3g} from the start):")
            print("| all-reduce | last loss | test top-1 | test loss | weights' distance from the float32 run |")
            print("|---|---|---|---|---|")
            for name in ("float32", "float32 again", "float16"):
                run = acc[name]
                print(f"| {name} | {run['losses'][-1]:.4f} | {100 * run['top1']:.2f}% | {run['val_loss']:.4f} | "
                      f"{run['weight_difference']:.3g} |")


def print_projection(gradient_bytes, compute_ms, latency_us=10.0):
    """Servers of 8 devices, one link of the given rate per server: hierarchical all-reduce (inside a server over
    its own fabric, across servers a ring of servers), so each server's link carries 2 (S - 1) / S x the gradient
    bytes per step, plus 2 (S - 1) hops of `latency_us`."""
    print(f"\nprojection: {gradient_bytes / 1e6:.2f} MB of float32 gradients (float16: half), one link per "
          f"server, {latency_us:g} us per hop; communication time (ms) per step, float32 / float16, and "
          f"whether it exceeds the assumed compute ({', '.join(f'{c:g}' for c in compute_ms)} ms)")
    print("| servers x 8 devices | link | float32 (ms) | float16 (ms) | " +
          " | ".join(f"sets the pace at {c:g} ms compute? (fp32 / fp16)" for c in compute_ms) + " |")
    print("|" + "---|" * (4 + len(compute_ms)))
    for servers in (8, 16, 64):
        for gbit in (25, 100, 400):
            hops = 2 * (servers - 1) * latency_us / 1e3
            fp32 = ring_bytes(gradient_bytes, servers) * 8 / (gbit * 1e9) * 1e3 + hops
            fp16 = ring_bytes(gradient_bytes / 2, servers) * 8 / (gbit * 1e9) * 1e3 + hops
            verdicts = [f"{'yes' if fp32 > c else 'no'} / {'yes' if fp16 > c else 'no'}" for c in compute_ms]
            print(f"| {servers} | {gbit} Gbit/s | {fp32:.1f} | {fp16:.1f} | " + " | ".join(verdicts) + " |")


def main(argv=None):
    if SPEC_VARIABLE in os.environ:  # a rank started by run_shape's msrun
        worker(json.loads(os.environ[SPEC_VARIABLE]))
        return 0
    args = parse_args(argv)
    if args.project:
        with open(args.project, encoding="utf-8") as f:
            records = json.load(f)["records"]
    else:
        print(f"load (1, 5, 15 min) at the start: {os.getloadavg()}; the machine's 2 cores are shared", flush=True)
        records = [run_shape(shape, args) for shape in args.shapes]
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"command": " ".join(sys.argv), "records": records}, f, indent=1)
    print_tables(records)
    imagenet = next((r for r in records if r["classes"] == 1000), None)
    if imagenet:
        print_projection(imagenet["gradient_bytes"], args.compute_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
