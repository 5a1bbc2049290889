"""CPU speed of GhostNet on MindSpore next to PyTorch at its best (timm) and ONNX Runtime, measured in one run.

    python scripts/benchmarks/cpu_speed.py                        # ghostnet_100, every workload, every runtime
    python scripts/benchmarks/cpu_speed.py --workloads train_32 --repeats 10 --no-reference
    python scripts/benchmarks/cpu_speed.py --kernels both         # MindSpore with and without src/kernels' pass
    python scripts/benchmarks/cpu_speed.py --rounds 3             # every runtime 3 times, round-robin
    git worktree add /tmp/before HEAD~1 && python scripts/benchmarks/cpu_speed.py --no-reference --before /tmp/before
                                                                  # a change's before and after, in one run
    python scripts/benchmarks/cpu_speed.py --no-reference --before /tmp/before --lockstep 40
                                                                  # ... and the two called in turn, 40 pairs
    python scripts/benchmarks/cpu_speed.py --workloads infer_224 --lockstep_pytorch 40
                                                                  # this repo and every PyTorch setting in turn
    python scripts/benchmarks/cpu_speed.py --variants jit_level=O1 onednn_isa=AVX512_CORE
                                                                  # MindSpore's own CPU options beside its default

Workloads: `infer_224` (batch 1, 3 x 224 x 224, 1000 classes: latency in graph mode of the network as trained and of
its inference form, BN folded into the convs as export.py does (then, with the kernels, ReLUs into them), both
called through src.deploy.serving_function, and of the exported MINDIR through nn.GraphCell; the MINDIR always holds MindSpore's own ops, not src/kernels), `train_224`
(batch 32, 3 x 224 x 224, 1000 classes: training images/s), `train_32` (batch 128, 1 x 32 x 32, 10 classes: the
Fashion-MNIST main job's setting) and `train_28_small` (batch 128, 1 x 28 x 28, the small-input network of the
Fashion-MNIST recipe; MindSpore only: timm has no small-input GhostNet). A training step is forward, label-smoothed
cross-entropy, backward and an SGD-momentum update, on a fixed batch (no data pipeline).

PyTorch runs in each of the settings a PyTorch user would try (scripts/benchmarks/cpu_speed_torch.py: eager NCHW,
eager channels_last, torch.compile, torch.compile + channels_last), and every other runtime is quoted against the
best of them on that workload. ONNX Runtime serves this repo's ONNX export of the inference form and timm's own
export. The PyTorch / ONNX Runtime half runs under the reference environment (.venv-torch, `WITH_TORCH=1 bash
scripts/setup.sh`; or TORCH_PYTHON) when there is one.

How it measures (scripts/benchmarks/harness.py): every (runtime, workload) in a fresh process; medians over
`--repeats` calls after `--warmup` untimed ones, the first call (MindSpore's graph compile, torch.compile's) timed
apart as compile time; peak memory is the process's resident high-water mark (framework included); `--rounds`
repeats the whole set round-robin and keeps each runtime's median round; `--lockstep` (with `--before`) serves
each MindSpore row's before and after from two processes at once and calls them in turn, which resolves a few
percent that fresh processes' rounds blur; `--lockstep_pytorch` does the same for the README's rows against every
PyTorch setting, and reads this repo's speed against the fastest setting of each round, a ratio this host's drift
(up to a third between sittings) does not move as it moves rounds run minutes apart. Ratios are speeds: above 1,
this row is faster than PyTorch's best (images/s over images/s; milliseconds the other way round).
"""
import argparse
import json
import os
import platform
import subprocess
import statistics
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
from scripts import reference_env  # noqa: E402  (the PyTorch side's interpreter)
from scripts.benchmarks import harness  # noqa: E402

TORCH_SETTINGS = {"eager": "PyTorch eager", "channels_last": "PyTorch channels_last",
                  "compile": "PyTorch torch.compile", "compile_channels_last": "PyTorch torch.compile + channels_last"}
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
    parser.add_argument("--torch_settings", nargs="+", choices=list(TORCH_SETTINGS), default=list(TORCH_SETTINGS),
                        help="the PyTorch settings to measure (the best of them is the reference)")
    parser.add_argument("--no-reference", action="store_true", help="skip PyTorch and ONNX Runtime")
    parser.add_argument("--before", metavar="TREE", default=None,
                        help="also measure every MindSpore row with the code in TREE (a git worktree of the commit "
                             "before a change), round-robin with this tree's: a change's before and after in one run")
    parser.add_argument("--lockstep", type=int, default=0, metavar="PAIRS",
                        help="with --before: also run every MindSpore row's before and after as two serving "
                             "processes called in turn PAIRS times, and report the median ratio of their times")
    parser.add_argument("--lockstep_pytorch", type=int, default=0, metavar="ROUNDS",
                        help="also serve each workload's README row (the inference form at batch 1, else the "
                             "training step) and PyTorch in every --torch_settings setting as processes called in "
                             "turn ROUNDS times, and report this repo's speed over PyTorch's best of each round")
    parser.add_argument("--variants", nargs="+", default=[], metavar="KEY=VALUE", type=_variant,
                        help="also measure every MindSpore row with one of MindSpore's own CPU options changed: "
                             "jit_level=O0|O1 (O1: MindSpore's graph-kernel fusion, compiled by AKG) or "
                             "onednn_isa=<ISA> (oneDNN's instruction-set cap, AVX2 here by default: src/runtime.py)")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of one MindSpore measurement
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: JSON spec of a call to serve (--lockstep)
    args = parser.parse_args(argv)
    if args.lockstep and not args.before:
        parser.error("--lockstep compares a change's before and after: it needs --before TREE")
    if args.lockstep_pytorch and args.no_reference:
        parser.error("--lockstep_pytorch runs PyTorch: it cannot go with --no-reference")
    return args


VARIANT_KEYS = ("jit_level", "onednn_isa")


def _variant(text):
    """'KEY=VALUE' -> (key, value), the key one of VARIANT_KEYS."""
    key, sep, value = text.partition("=")
    if not sep or key not in VARIANT_KEYS or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(VARIANT_KEYS)}")
    return key, value


# ---------------------------------------------------------------- MindSpore worker (one measurement per process)

def mindspore_call(spec):
    """(the call a measurement times, the result so far): a training step, or a batch-1 forward of the network as
    trained, of its inference form or of its exported MINDIR, as `spec` says; its first call compiles."""
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
    if "jit_level" in spec:
        ms.set_context(jit_config={"jit_level": spec["jit_level"]})
    ms.set_seed(0)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((work["batch"], work["channels"], work["size"], work["size"]))
                  .astype(np.float32))
    net = create_model(spec["model"], num_classes=work["classes"], in_channels=work["channels"],
                       small_input=work.get("small_input", False))
    if spec["runtime"] == "onnx_export":  # this repo's ONNX of the inference form, for ONNX Runtime to serve
        prepare_for_inference(net, x)
        ms.export(net, x, file_name=spec["output"], file_format="ONNX")
        return None, {"onnx": spec["output"] + ".onnx"}
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
        return lambda: step(x, labels)[0].asnumpy(), result
    if spec["runtime"] in ("mindspore", "folded"):  # graph mode: the network as trained, or BN folded
        net.set_train(False)
        serve = _serving_function()(net)
        return lambda: serve(x).asnumpy(), result
    with tempfile.TemporaryDirectory() as tmp:  # the deployable file: BN folded, exported (plain convs), loaded back
        prepare_for_inference(net, x)
        ms.export(net, x, file_name=os.path.join(tmp, "model"), file_format="MINDIR")
        graph = ms.nn.GraphCell(ms.load(os.path.join(tmp, "model.mindir")))
    return lambda: graph(x).asnumpy(), result


def _serving_function():
    """src.deploy's serving function (how this repo serves a network), or calling the cell itself in a --before tree
    older than it."""
    try:
        from src.deploy import serving_function
    except ImportError:
        return lambda net: net
    return serving_function


def mindspore_worker(spec, serve=False):
    """One measurement (its result), or with `serve` the call served for --lockstep (harness.serve)."""
    measure = _serve_mindspore if serve else _measure_mindspore
    if "jit_level" not in spec:
        return measure(spec)
    with tempfile.TemporaryDirectory(prefix="cpu_speed_") as scratch:  # graph-kernel fusion (AKG) writes its
        os.chdir(scratch)                                                 # kernels into the working directory
        try:
            return measure(spec)
        finally:
            os.chdir(REPO)


def _serve_mindspore(spec):
    """Serve the call with the src/ of spec["code"] (a tree): the measuring code stays this tree's."""
    assert "src" not in sys.modules, "src must be imported from the tree under test"
    sys.path.insert(0, spec["code"])
    call, _ = mindspore_call(spec)
    harness.serve(call, spec["warmup"])


def _measure_mindspore(spec):
    call, result = mindspore_call(spec)
    if call is None:
        return result
    _, result["compile_s"] = harness.timed_once(call)
    seconds = harness.median_seconds(call, spec["repeats"], spec["warmup"])
    work = WORKLOADS[spec["workload"]]
    result.update(dict(images_per_s=work["batch"] / seconds, step_ms=seconds * 1e3) if work["train"] else
                  dict(latency_ms=seconds * 1e3))
    result["peak_rss_mib"] = harness.peak_rss_mib()
    return result


# ---------------------------------------------------------------- driver

def _value(workload, result):
    return result["images_per_s"] if WORKLOADS[workload]["train"] else result["latency_ms"]


def _speed(workload, result):
    """Higher is faster, on both kinds of workload."""
    return _value(workload, result) if WORKLOADS[workload]["train"] else 1.0 / result["latency_ms"]


def _mindspore_process(spec, tree=REPO, mode="--worker"):
    return [sys.executable, os.path.join(tree, "scripts", "benchmarks", "cpu_speed.py"), mode, json.dumps(spec)]


def _commit(tree):
    done = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or tree


def jobs_of(args, torch_python, onnx_dir):
    """[(runtime label, workload, command, env)] of every requested measurement. With a reference environment,
    inference workloads also get this repo's ONNX export, made here once (a MindSpore process) for ONNX Runtime."""
    torch_env = reference_env.environment()
    torch_side = os.path.join(REPO, "scripts", "benchmarks", "cpu_speed_torch.py")
    common = ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    trees = [("", REPO)] + ([(f" [before: {_commit(args.before)}]", os.path.abspath(args.before))]
                            if args.before else [])
    settings = [("", {}, None)] + [(f" [{key}={value}]", {key: value} if key == "jit_level" else {},
                                    dict(os.environ, ONEDNN_MAX_CPU_ISA=value) if key == "onednn_isa" else None)
                                   for key, value in args.variants]
    jobs = []
    for workload in args.workloads:
        work = WORKLOADS[workload]
        spec = dict(workload=workload, model=args.model, repeats=args.repeats, warmup=args.warmup)
        for tree_label, tree in trees:
            for setting_label, setting, env in settings:
                label, base = tree_label + setting_label, dict(spec, **setting)
                for kernels in (("on", "off") if args.kernels == "both" else (args.kernels,)):
                    suffix = ("" if args.kernels != "both" else
                              ", custom kernels" if kernels == "on" else ", oneDNN only")
                    jobs.append((f"MindSpore graph{suffix}{label}", workload,
                                 _mindspore_process(dict(base, runtime="mindspore", kernels=kernels), tree), env))
                    if not work["train"]:
                        jobs.append((f"MindSpore graph, BN folded{suffix}{label}", workload,
                                     _mindspore_process(dict(base, runtime="folded", kernels=kernels), tree), env))
                if not work["train"]:
                    jobs.append((f"MindSpore MINDIR (BN folded){label}", workload,
                                 _mindspore_process(dict(base, runtime="mindir", kernels="off"), tree), env))
        if not torch_python or work.get("small_input"):  # timm's GhostNet has no small-input setting
            continue
        torch_command = [torch_python, torch_side, "--workload", json.dumps(work), "--model", args.model, *common]
        for setting in args.torch_settings:
            jobs.append((TORCH_SETTINGS[setting], workload,
                         [*torch_command, "--runtime", "pytorch", "--setting", setting], torch_env))
        if not work["train"]:
            exported = harness.measure_in_process(_mindspore_process(
                dict(spec, runtime="onnx_export", output=os.path.join(onnx_dir, workload))))
            if "error" in exported:
                raise SystemExit(f"cpu_speed.py: this repo's ONNX export failed: {exported['error']}")
            jobs.append(("ONNX Runtime, this repo's ONNX", workload,
                         [*torch_command, "--runtime", "onnxruntime", "--onnx", exported["onnx"]], torch_env))
            jobs.append(("ONNX Runtime, timm's ONNX", workload, [*torch_command, "--runtime", "onnxruntime"],
                         torch_env))
    return jobs


def measure(args):
    """[(runtime label, workload, result)] for every requested measurement: each a fresh process, every one
    `--rounds` times round-robin, each runtime's median round kept (its figures of every round under "rounds")."""
    torch_python = None if args.no_reference else reference_env.interpreter()
    with tempfile.TemporaryDirectory() as onnx_dir:
        jobs = jobs_of(args, torch_python, onnx_dir)
        results = harness.round_robin(range(len(jobs)), args.rounds,
                                      lambda k: harness.measure_in_process(jobs[k][2], jobs[k][3]),
                                      describe=lambda k: f"{jobs[k][1]:10s} {jobs[k][0]:40s}")
    return [(label, workload, harness.median_round(results[k], lambda r, w=workload: _value(w, r)))
            for k, (label, workload, _, _) in enumerate(jobs)]


def measure_lockstep(args):
    """{(runtime label, workload): lockstep figures} of every MindSpore graph row, this tree against --before's:
    both served at once and called in turn (harness.lockstep), times in ms and before / after per pair."""
    figures = {}
    for workload in args.workloads:
        runtimes = ["mindspore"] + ([] if WORKLOADS[workload]["train"] else ["folded"])
        for runtime in runtimes:
            for kernels in (("on", "off") if args.kernels == "both" else (args.kernels,)):
                spec = dict(workload=workload, model=args.model, warmup=args.warmup, runtime=runtime, kernels=kernels)
                after, before = harness.lockstep([_mindspore_process(dict(spec, code=tree), mode="--serve")
                                                  for tree in (REPO, os.path.abspath(args.before))], args.lockstep)
                label = _runtime_label(runtime) + (
                    "" if args.kernels != "both" else ", custom kernels" if kernels == "on" else ", oneDNN only")
                before_wall, before_cpu = [c["seconds"] for c in before], [c["cpu_seconds"] for c in before]
                after_wall, after_cpu = [c["seconds"] for c in after], [c["cpu_seconds"] for c in after]
                figures[(label, workload)] = dict(
                    harness.ratio_summary(before_wall, after_wall), after_ms=statistics.median(after_wall) * 1e3,
                    before_ms=statistics.median(before_wall) * 1e3,
                    cpu=dict(harness.ratio_summary(before_cpu, after_cpu),
                             after_ms=statistics.median(after_cpu) * 1e3, before_ms=statistics.median(before_cpu) * 1e3))
                print(f"  lockstep {workload:10s} {label:40s} {json.dumps(figures[(label, workload)])}",
                      file=sys.stderr, flush=True)
    return figures


def _readme_runtime(workload):
    """The MindSpore runtime the README quotes for `workload`: the training step, or the inference form."""
    return "mindspore" if WORKLOADS[workload]["train"] else "folded"


def _runtime_label(runtime):
    return "MindSpore graph" + (", BN folded" if runtime == "folded" else "")


def measure_against_pytorch(args):
    """{workload: figures} of each workload's README row served with PyTorch in every requested setting, all called
    in turn `--lockstep_pytorch` times (harness.lockstep): each one's median time and the speed ratios per round."""
    torch_python = reference_env.interpreter()
    if torch_python is None:
        raise SystemExit("cpu_speed.py: --lockstep_pytorch needs the reference environment (WITH_TORCH=1 bash "
                         "scripts/setup.sh, or TORCH_PYTHON)")
    torch_side = os.path.join(REPO, "scripts", "benchmarks", "cpu_speed_torch.py")
    figures = {}
    for workload in args.workloads:
        work = WORKLOADS[workload]
        if work.get("small_input"):  # timm's GhostNet has no small-input setting
            continue
        spec = dict(workload=workload, model=args.model, warmup=args.warmup, kernels="on", code=REPO,
                    runtime=_readme_runtime(workload))
        torch_command = [torch_python, torch_side, "--workload", json.dumps(work), "--model", args.model,
                         "--warmup", str(args.warmup), "--runtime", "pytorch", "--serve", "--setting"]
        commands = [_mindspore_process(spec, mode="--serve")] + [[*torch_command, s] for s in args.torch_settings]
        envs = [None] + [reference_env.environment()] * len(args.torch_settings)
        # batch 1: each timed call after 3 untimed ones (a server's back-to-back requests); a step warms its own caches
        times = harness.lockstep(commands, args.lockstep_pytorch, envs, warm_calls=0 if work["train"] else 3)
        ours, *theirs = [[call["seconds"] for call in calls] for calls in times]
        figures[workload] = against_pytorch(ours, dict(zip((TORCH_SETTINGS[s] for s in args.torch_settings), theirs)))
        print(f"  lockstep {workload:10s} against PyTorch {json.dumps(figures[workload])}", file=sys.stderr,
              flush=True)
    return figures


def against_pytorch(ours, theirs) -> dict:
    """Lockstep figures from per-round seconds: this repo's `ours` and each PyTorch setting's (`theirs`, {label:
    seconds}). Speeds are PyTorch's time over ours in the same round (the same batch on both sides), against each
    setting and against the fastest setting of each round."""
    best = [min(times) for times in zip(*theirs.values())]
    return dict(ours_ms=statistics.median(ours) * 1e3,
                settings={label: dict(harness.ratio_summary(times, ours), ms=statistics.median(times) * 1e3)
                          for label, times in theirs.items()},
                best=harness.ratio_summary(best, ours))


def against_pytorch_table(figures, rounds) -> str:
    lines = [f"| workload | runtime | ms per call, median of {rounds} rounds | this repo's speed over it, median of "
             "rounds (quartiles) |", "|---|---|---|---|"]
    for workload, f in figures.items():
        lines.append(f"| {workload} | {_runtime_label(_readme_runtime(workload))} | {f['ours_ms']:.1f} |  |")
        for label, s in f["settings"].items():
            lines.append(f"| {workload} | {label} | {s['ms']:.1f} | {s['median']:.2f}x ({s['q1']:.2f}-{s['q3']:.2f}) |")
        b = f["best"]
        lines.append(f"| {workload} | PyTorch's best setting of each round |  | "
                     f"**{b['median']:.2f}x** ({b['q1']:.2f}-{b['q3']:.2f}) |")
    return "\n".join(lines)


def lockstep_table(figures, before) -> str:
    lines = [f"| workload | runtime | ms per call: this tree / before ({_commit(before)}) | before / after time, "
             "median of pairs (quartiles) | CPU ms per call (all threads): this tree / before | before / after CPU "
             "time (quartiles) | pairs |", "|---|---|---|---|---|---|---|"]
    for (label, workload), f in figures.items():
        c = f["cpu"]
        lines.append(f"| {workload} | {label} | {f['after_ms']:.1f} / {f['before_ms']:.1f} | {f['median']:.3f} "
                     f"({f['q1']:.3f}-{f['q3']:.3f}) | {c['after_ms']:.1f} / {c['before_ms']:.1f} | "
                     f"{c['median']:.3f} ({c['q1']:.3f}-{c['q3']:.3f}) | {f['pairs']} |")
    return "\n".join(lines)


def pytorch_best(rows) -> dict:
    """{workload: (label, result)} of the fastest PyTorch setting measured on each workload."""
    best = {}
    for label, workload, result in rows:
        if label.startswith("PyTorch") and "error" not in result:
            if workload not in best or _speed(workload, result) > _speed(workload, best[workload][1]):
                best[workload] = (label, result)
    return best


def _machine():
    from src.runtime import cpu_model
    return f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def table(rows, model):
    """Markdown: one line per (workload, runtime), with its speed relative to PyTorch's best setting there."""
    best = pytorch_best(rows)
    lines = [f"| workload ({model}) | runtime | latency ms / train img/s | speed vs PyTorch's best | compile s "
             f"| peak RSS MiB |", "|---|---|---|---|---|---|"]
    for label, workload, result in rows:
        if "error" in result:
            lines.append(f"| {workload} | {label} | failed: {result['error']} | | | |")
            continue
        train = WORKLOADS[workload]["train"]
        ratio = ""
        if workload in best:
            best_label, best_result = best[workload]
            ratio = ("the best PyTorch" if best_label == label else
                     f"{_speed(workload, result) / _speed(workload, best_result):.2f}x")
        compile_s = f"{result['compile_s']:.1f}" if "compile_s" in result else ""
        lines.append(f"| {workload} | {label} | {_value(workload, result):.1f} {'img/s' if train else 'ms'} | "
                     f"{ratio} | {compile_s} | {result['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        harness.report(mindspore_worker(json.loads(args.worker)))
        return
    if args.serve:
        mindspore_worker(json.loads(args.serve), serve=True)
        return
    print(f"machine: {_machine()}; every runtime uses all {os.cpu_count()} cores; medians of {args.repeats} runs "
          f"after {args.warmup} warm-up; median of {args.rounds} round(s)", flush=True)
    rows = measure(args)
    print(table(rows, args.model))
    locked = measure_lockstep(args) if args.lockstep else {}
    if locked:
        print(f"\nBefore and after in lockstep ({args.lockstep} pairs of calls, two serving processes called in "
              "turn):\n" + lockstep_table(locked, args.before))
    against = measure_against_pytorch(args) if args.lockstep_pytorch else {}
    if against:
        print(f"\nAgainst PyTorch in lockstep ({args.lockstep_pytorch} rounds, every process called once per round):\n"
              + against_pytorch_table(against, args.lockstep_pytorch))
    if args.json:
        from src.atomic_files import write_json_atomic
        best = pytorch_best(rows)
        readme_rows = {(_runtime_label(_readme_runtime(w)), w): f for w, f in against.items()}
        write_json_atomic(args.json, [{"runtime": label, "workload": w, **r,
                                       "pytorch_best": best.get(w, ("",))[0] == label,
                                       **({"lockstep": locked[(label, w)]} if (label, w) in locked else {}),
                                       **({"lockstep_pytorch": readme_rows[(label, w)]}
                                          if (label, w) in readme_rows else {})}
                                      for label, w, r in rows])


if __name__ == "__main__":
    main()
