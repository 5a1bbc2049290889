"""Compare models trained under one shared schedule: params, MACs, CPU latency, peak memory, training time, accuracy.

    python scripts/compare_models.py                           # README's table: configs/comparison/fashion_mnist.yaml
    python scripts/compare_models.py --models ghostnet_050 ghost_vgg16:2 --epochs 1    # any config key as a flag
    python scripts/compare_models.py --reuse                   # finished runs measured again, unfinished ones resumed

An entry is a registered model name; `name:s` sets its Ghost ratio s (`ghost_vgg16:1` is the plain VGG-16, the
baseline of the Ghost versions). Each entry trains with `train.py --config CONFIG --model NAME [--ghost_ratio s]
--output_dir OUTPUT/TAG` in a process of its own, so that its peak resident memory (getrusage of that child) and its
wall time are its own; both go to OUTPUT/TAG/training_process.json as soon as it ends, so a comparison that is
stopped part-way keeps them for `--reuse`. Then, in this process: params and MACs (src/analysis/profile.py) at the
schedule's input size, and batch-1 CPU latency of the trained network in its inference form (BN folded, graph mode,
median of `--latency_repeats`). Accuracy is the test top-1 of the last epoch (EMA weights when the schedule uses
EMA) and the best epoch's. Entries that share a model name are also given as a fraction of the `:1` entry's params
and MACs: the paper's claim is that a Ghost module with ratio s costs about 1/s of the conv it replaces at the same
accuracy. The table goes to stdout and OUTPUT/comparison.md, every figure to OUTPUT/comparison.json.
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import src  # noqa: E402,F401  (before mindspore: caps oneDNN's ISA)
from src.atomic_files import write_json_atomic, write_text_atomic  # noqa: E402
from src.config import ConfigError, load_config, parse_overrides  # noqa: E402
from src.engine.run_state import RunCheckpoints  # noqa: E402

DEFAULT_MODELS = ["ghostnet_050", "ghostnet_100", "ghostnet_130", "mobilenetv3_large_100",
                  "ghost_vgg16:1", "ghost_vgg16:2", "ghost_vgg16:3", "ghost_vgg16:4"]


class CompareError(ValueError):
    """A comparison that cannot run as asked (bad entry, failed training run); the message says which."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,  # --mode is a key
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "comparison", "fashion_mnist.yaml"),
                        help="the shared schedule (its model key is replaced by each entry)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="entries: NAME or NAME:GHOST_RATIO")
    parser.add_argument("--output", default=None, help="default: outputs/comparison_<config name>")
    parser.add_argument("--reuse", action="store_true",
                        help="do not retrain entries whose run has every epoch (their memory and wall time come "
                             "from the run's training_process.json; without one those columns stay blank), and "
                             "resume the ones that stopped part-way (`train.py --resume auto`; wall time then left "
                             "blank)")
    parser.add_argument("--latency_repeats", type=int, default=30)
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    for key in ("model", "ghost_ratio", "output_dir"):
        if key in overrides:
            raise CompareError(f"--{key} is set per entry by compare_models.py; give entries with --models")
    return args, rest, overrides


def parse_entry(entry):
    """'name' or 'name:s' -> (name, ghost ratio or None, tag used as the run's directory)."""
    name, _, ratio = entry.partition(":")
    if not ratio:
        return name, None, name
    if not ratio.isdigit() or int(ratio) < 1:
        raise CompareError(f"entry '{entry}': the Ghost ratio after ':' must be a whole number >= 1")
    return name, int(ratio), f"{name}_s{ratio}"


def _epochs_done(run_dir):
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return len(json.load(f)["epochs"])


PROCESS_RECORD = "training_process.json"  # in each entry's run directory: what only the training process could measure


def _process_record(run_dir):
    """wall_s and peak_rss_mib of the process that trained run_dir (None each when it left no record)."""
    path = os.path.join(run_dir, PROCESS_RECORD)
    if not os.path.isfile(path):
        return {"wall_s": None, "peak_rss_mib": None}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def train(config, rest, name, ratio, run_dir, resume=False):
    """train.py in a child process (continuing the run in run_dir when `resume`) -> (wall seconds, peak RSS MiB of
    that process)."""
    command = [sys.executable, os.path.join(REPO, "train.py"), "--config", config, "--model", name,
               "--output_dir", run_dir, *rest, *(["--resume", "auto"] if resume else [])]
    if ratio is not None:
        command += ["--ghost_ratio", str(ratio)]
    print(f"== {' '.join(command)}", flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO)
    _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child alone
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise CompareError(f"training {name}{'' if ratio is None else f' (s={ratio})'} failed with exit status "
                           f"{code}; its log is above, its outputs in {run_dir}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def measure(cfg, run_dir, latency_repeats):
    """Params, MACs, latency and accuracy of one finished run (its best.ckpt and metrics.json)."""
    import numpy as np
    import mindspore
    from src.analysis.profile import count_macs, count_params, measure_latency
    from src.configured_model import for_this_device, model_from_checkpoint
    from src.deploy import prepare_for_inference

    net, _, channels = model_from_checkpoint(cfg, os.path.join(run_dir, "best.ckpt"))
    shape = (channels, cfg.image_size, cfg.image_size)
    figures = {"params_m": count_params(net) / 1e6, "macs_m": count_macs(net, shape) / 1e6}
    prepare_for_inference(net, mindspore.Tensor(np.zeros((1, *shape), np.float32)))
    for_this_device(net, cfg)  # the CPU inference form: BN folded, then the kernels
    figures["latency_ms"] = measure_latency(net, shape, repeats=latency_repeats)
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        epochs = json.load(f)["epochs"]
    tops = [row["val_top1"] for row in epochs if row["val_top1"] is not None]
    figures.update(top1_last=100 * tops[-1], top1_best=100 * max(tops), epochs=len(epochs),
                   train_time_s=sum(row["train_time_s"] for row in epochs))
    return figures


def table(rows):
    """Markdown, one line per entry; `:s` entries also relative to their model's `:1` entry."""
    baseline = {row["model"]: row for row in rows if row["ghost_ratio"] == 1}
    lines = ["| model | s | params (M) | MACs (M) | vs s=1: params / MACs | latency bs 1 (ms) | peak RSS, training "
             "(MiB) | training time (s) | test top-1, last / best (%) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = baseline.get(row["model"])
        relative = (f"{row['params_m'] / base['params_m']:.2f} / {row['macs_m'] / base['macs_m']:.2f}"
                    if base is not None and row["ghost_ratio"] is not None else "")
        trained = (f"{row['train_time_s']:.0f}" if row.get("wall_s") is None
                   else f"{row['train_time_s']:.0f} ({row['wall_s']:.0f} wall)")
        memory = "" if row.get("peak_rss_mib") is None else f"{row['peak_rss_mib']:.0f}"
        lines.append(f"| {row['model']} | {row['ghost_ratio'] or ''} | {row['params_m']:.2f} | {row['macs_m']:.1f} | "
                     f"{relative} | {row['latency_ms']:.2f} | {memory} | {trained} | "
                     f"{row['top1_last']:.2f} / {row['top1_best']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    args, rest, overrides = parse_args(argv)
    cfg = load_config(args.config, overrides)
    entries = [parse_entry(entry) for entry in args.models]
    output = args.output or os.path.join("outputs", "comparison_" + os.path.splitext(os.path.basename(args.config))[0])
    os.makedirs(output, exist_ok=True)

    runs = {}
    for name, ratio, tag in entries:
        run_dir = os.path.join(output, tag)
        if args.reuse and _epochs_done(run_dir) >= cfg.epochs:
            print(f"== {tag}: reusing the finished run in {run_dir}", flush=True)
            runs[tag] = _process_record(run_dir)
            continue
        resume = args.reuse and bool(RunCheckpoints(run_dir, keep=0).resumable())
        if resume:
            print(f"== {tag}: resuming the unfinished run in {run_dir} ({_epochs_done(run_dir)} of {cfg.epochs} "
                  f"epochs done); its wall time will be left blank", flush=True)
        wall, peak = train(args.config, rest, name, ratio, run_dir, resume)
        runs[tag] = {"wall_s": None if resume else wall, "peak_rss_mib": peak}
        write_json_atomic(os.path.join(run_dir, PROCESS_RECORD), runs[tag])

    rows = []
    for name, ratio, tag in entries:
        entry_cfg = load_config(args.config, dict(overrides, model=name, **({} if ratio is None else
                                                                             {"ghost_ratio": ratio})))
        row = {"tag": tag, "model": name, "ghost_ratio": ratio, **runs[tag]}
        row.update(measure(entry_cfg, os.path.join(output, tag), args.latency_repeats))
        rows.append(row)
        print(f"== {tag}: {json.dumps(row)}", flush=True)

    write_json_atomic(os.path.join(output, "comparison.json"), {"config": args.config, "overrides": rest, "rows": rows})
    text = table(rows)
    write_text_atomic(os.path.join(output, "comparison.md"), text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CompareError, ConfigError) as err:
        print(f"compare_models.py: error: {err}", file=sys.stderr)
        sys.exit(2)
