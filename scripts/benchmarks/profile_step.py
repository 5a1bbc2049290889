"""Where a MindSpore CPU step's time goes: per operator type, the launches and the time in kernels, and the time
outside them, for the workloads of scripts/benchmarks/cpu_speed.py.

    python scripts/benchmarks/profile_step.py                              # train_32, train_224, infer_224
    python scripts/benchmarks/profile_step.py --workloads infer_224 --kernels off --json OUT.json

Each workload in a fresh process: the call cpu_speed.py times (a training step, or the batch-1 forward of the
inference form), compiled and warmed up, timed without the profiler (median of `--repeats`), then `--steps` calls
under MindSpore's profiler (mindspore.profiler.profile, CPU activity, after one warm-up step), whose per-operator-type
table (launches, total time) is read back, and the src/kernels operators' time split by the cell type that launched
them (forward or backward). "Outside kernels" is the unprofiled step time minus the kernels' time per
step: graph launch, the runtime's scheduling of each operator, memory management, the copy of the result. The
profiler itself slows each launch a little, so the kernels' share is an upper bound.
"""
import argparse
import csv
import glob
import json
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
from scripts.benchmarks import harness  # noqa: E402
from scripts.benchmarks.cpu_speed import WORKLOADS, mindspore_call  # noqa: E402

DEFAULT_WORKLOADS = ("train_32", "train_224", "infer_224")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(DEFAULT_WORKLOADS))
    parser.add_argument("--kernels", choices=("on", "off"), default="on", help="src/kernels' CPU pass")
    parser.add_argument("--steps", type=int, default=5, help="profiled calls")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls without the profiler")
    parser.add_argument("--json", help="also write the profiles to this file")
    parser.add_argument("--keep_trace", metavar="DIR",
                        help="keep each workload's per-operator CSV (every launch's scope, shapes and time) in DIR")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of one workload
    return parser.parse_args(argv)


def read_op_types(folder, steps) -> dict:
    """{op type: {launches, ms}} per step, from the profiler's cpu_op_type_info CSV under `folder`."""
    found = glob.glob(os.path.join(folder, "**", "FRAMEWORK", "cpu_op_type_info_*.csv"), recursive=True)
    if len(found) != 1:
        raise RuntimeError(f"expected one cpu_op_type_info CSV under {folder}, found {found}")
    with open(found[0], encoding="utf-8") as f:
        return {row["op_type"]: {"launches": int(row["type_occurrences"]) / steps,
                                 "ms": float(row["total_compute_time"]) / steps} for row in csv.DictReader(f)}


def read_custom_kernels(folder, steps) -> dict:
    """{"<cell type> forward|backward": {launches, ms}} per step of the src/kernels operators (op type Custom), from
    the profiler's per-operator CSV: each is named by the scope of the cell that runs it (its gradient's under
    "Gradients/"), so the kernels' time splits by the cell type that launched it."""
    found = glob.glob(os.path.join(folder, "**", "FRAMEWORK", "cpu_op_detail_info_*.csv"), recursive=True)
    if len(found) != 1:
        raise RuntimeError(f"expected one cpu_op_detail_info CSV under {folder}, found {found}")
    kernels = {}
    with open(found[0], encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["op_type"] != "Custom":
                continue
            cell = row["full_op_name"].split("/")[-2].rsplit("-", 1)[-1]  # "3-BatchNorm2d" -> BatchNorm2d
            if cell.startswith("Grad_"):  # a gradient's scope: Gradients/.../3-BatchNorm2d/Grad_Custom/Custom-op10
                cell = row["full_op_name"].split("/")[-3].rsplit("-", 1)[-1]
            key = f"{cell} {'backward' if row['full_op_name'].startswith('Gradients/') else 'forward'}"
            entry = kernels.setdefault(key, {"launches": 0.0, "ms": 0.0})
            entry["launches"] += int(row["op_occurrences"]) / steps
            entry["ms"] += float(row["op_total_time(ms)"]) / steps
    return {key: {name: round(value, 2) for name, value in entry.items()} for key, entry in kernels.items()}


def profile_worker(spec):
    import mindspore.profiler as msprof

    call, result = mindspore_call(dict(spec, runtime="folded" if spec["workload"].startswith("infer") else
                                       "mindspore"))
    _, result["compile_s"] = harness.timed_once(call)
    result["step_ms"] = harness.median_seconds(call, spec["repeats"], warmup=3) * 1e3
    with tempfile.TemporaryDirectory() as folder:
        with msprof.profile(activities=[msprof.ProfilerActivity.CPU],
                            schedule=msprof.schedule(wait=0, warmup=1, active=spec["steps"], repeat=1),
                            on_trace_ready=msprof.tensorboard_trace_handler(folder)) as profiler:
            for _ in range(spec["steps"] + 1):
                call()
                profiler.step()
        ops = read_op_types(folder, spec["steps"])
        result["custom_kernels_by_cell"] = read_custom_kernels(folder, spec["steps"])
        if spec.get("keep_trace"):
            os.makedirs(spec["keep_trace"], exist_ok=True)
            detail, = glob.glob(os.path.join(folder, "**", "FRAMEWORK", "cpu_op_detail_info_*.csv"), recursive=True)
            shutil.copyfile(detail, os.path.join(spec["keep_trace"], f"{spec['workload']}_op_detail.csv"))
    kernels_ms = sum(op["ms"] for op in ops.values())
    result.update(op_types=ops, kernels_ms=kernels_ms, launches=sum(op["launches"] for op in ops.values()),
                  outside_kernels_ms=result["step_ms"] - kernels_ms)
    return result


def table(workload, profile) -> str:
    ops = sorted(profile["op_types"].items(), key=lambda item: -item[1]["ms"])
    lines = [f"{workload}: {profile['step_ms']:.1f} ms per call without the profiler; kernels "
             f"{profile['kernels_ms']:.1f} ms in {profile['launches']:.0f} launches; outside kernels "
             f"{profile['outside_kernels_ms']:.1f} ms ({profile['outside_kernels_ms'] / profile['step_ms']:.0%}, "
             f"{1e3 * profile['outside_kernels_ms'] / profile['launches']:.0f} us per launch)",
             "", "| operator type | launches per call | ms per call | share of kernel time |", "|---|---|---|---|"]
    lines += [f"| {name} | {op['launches']:.0f} | {op['ms']:.2f} | {op['ms'] / profile['kernels_ms']:.1%} |"
              for name, op in ops]
    custom = sorted(profile.get("custom_kernels_by_cell", {}).items(), key=lambda item: -item[1]["ms"])
    if custom:
        lines += ["", "| Custom (src/kernels), by the cell that launched it | launches per call | ms per call "
                      "| share of kernel time |", "|---|---|---|---|"]
        lines += [f"| {name} | {op['launches']:.0f} | {op['ms']:.2f} | {op['ms'] / profile['kernels_ms']:.1%} |"
                  for name, op in custom]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        harness.report(profile_worker(json.loads(args.worker)))
        return
    profiles = {}
    for workload in args.workloads:
        spec = dict(workload=workload, model=args.model, kernels=args.kernels, steps=args.steps,
                    repeats=args.repeats, keep_trace=args.keep_trace and os.path.abspath(args.keep_trace))
        profiles[workload] = harness.measure_in_process(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)])
        if "error" in profiles[workload]:
            print(f"{workload}: failed: {profiles[workload]['error']}\n", flush=True)
            continue
        print(table(workload, profiles[workload]) + "\n", flush=True)
    if args.json:
        from src.atomic_files import write_json_atomic
        write_json_atomic(args.json, {"args": vars(args), "profiles": profiles}, indent=2)


if __name__ == "__main__":
    main()
