"""Compare models trained under one shared schedule: params, MACs, CPU latency, peak memory, training time, accuracy.

    python scripts/compare_models.py                           # README's table: configs/comparison/fashion_mnist.yaml
    python scripts/compare_models.py --models ghostnet_050 ghost_vgg16:2 --epochs 1    # any config key as a flag
    python scripts/compare_models.py --reuse                   # finished runs measured again, unfinished ones resumed
    python scripts/compare_models.py --plan configs/plans/ghostnet_generations_fashion_mnist.yaml --reuse

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

A plan (`--plan FILE`, YAML; configs/plans/ghostnet_generations_fashion_mnist.yaml is one) names the schedule,
the entries with their own seeds and config overrides, a teacher that distilling entries learn from, claims ("entry A
beats entry B") and the folder of its records. Each (entry, seed) trains in OUTPUT/TAG/seed_S, seed by seed across
the entries, and is judged as it would be deployed as soon as it ends: its final checkpoint is exported by export.py
to MINDIR and ONNX (re-parameterised, BN folded; export.py checks each file against the checkpoint) and validate.py
evaluates the exported MINDIR on the test split (the run's figure; it must agree with the training-form figure of
the run's last epoch, or the comparison stops: a fusion or export fault shows here). Its record (config, metrics,
evaluation report, process record, run.json) then goes to RECORDS/TAG/seed_S: the records, not the checkpoints, are
the comparison's memory, so a plan stopped at any point continues with `--reuse` in a later session, even on a fresh
clone, training only the runs without a record (a record made under another recipe is an error). The teacher trains
before the first distilling run; its final EMA weights are kept in its record, pinned by hash. Then one latency pass
measures each entry's architecture (fresh weights, exported by export.py) in its MindSpore inference form and in
ONNX Runtime, round-robin over `--latency_rounds`. The table gives mean and standard deviation over seeds, each claim
the difference of means with its standard error; `--report` trains nothing and tabulates the records.
"""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Optional

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import src  # noqa: E402,F401  (before mindspore: caps oneDNN's ISA)
from src.atomic_files import copy_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from src.config import ConfigError, load_config, parse_overrides  # noqa: E402
from src.engine.run_folder import RUN_CONTROL  # noqa: E402
from src.engine.run_state import RunCheckpoints  # noqa: E402
from scripts.benchmarks import harness  # noqa: E402

DEFAULT_MODELS = ["ghostnet_050", "ghostnet_100", "ghostnet_130", "mobilenetv3_large_100",
                  "ghost_vgg16:1", "ghost_vgg16:2", "ghost_vgg16:3", "ghost_vgg16:4"]
PER_ENTRY_KEYS = ("model", "ghost_ratio", "output_dir", "seed", "teacher_model", "teacher_ckpt", "teacher_mindir")
DEPLOYED_AGREEMENT = 0.05  # points of top-1: the exported MINDIR and the training form of the same weights
PROCESS_RECORD = "training_process.json"  # in each run directory: what only the training process could measure


class CompareError(ValueError):
    """A comparison that cannot run as asked (bad entry, failed training run); the message says which."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One arm of the comparison: a model (with its Ghost ratio and config overrides) trained once per seed.

    A seed of None keeps the schedule's own seed and trains in OUTPUT/TAG; a given seed trains in
    OUTPUT/TAG/seed_S. `distill` entries learn from the plan's teacher.
    """
    tag: str
    model: str
    ghost_ratio: Optional[int] = None
    seeds: tuple = (None,)
    overrides: tuple = ()  # ((key, value), ...): this entry's config keys on top of the schedule
    distill: bool = False
    label: str = ""

    def run_dir(self, output, seed):
        return os.path.join(output, self.tag) if seed is None else os.path.join(output, self.tag, f"seed_{seed}")

    def flags(self):
        flags = ["--model", self.model]
        if self.ghost_ratio is not None:
            flags += ["--ghost_ratio", str(self.ghost_ratio)]
        for key, value in self.overrides:
            flags += [f"--{key}", json.dumps(value) if isinstance(value, (list, bool)) else str(value)]
        return flags


@dataclasses.dataclass(frozen=True)
class Teacher:
    """The model that `distill` entries learn from: trained first under the schedule with its own epochs."""
    model: str
    epochs: int

    @property
    def tag(self):
        return f"teacher_{self.model}"


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str
    better: str  # the entry tag that should reach the higher mean top-1
    than: str


@dataclasses.dataclass
class Plan:
    config: str
    entries: list
    teacher: Optional[Teacher] = None
    claims: list = dataclasses.field(default_factory=list)
    records: Optional[str] = None  # where finished runs are recorded (a path inside the repo, e.g. docs/results/...)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,  # --mode is a key
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=None,
                        help="the shared schedule (its model key is replaced by each entry); default: "
                             "configs/comparison/fashion_mnist.yaml, or the plan's")
    parser.add_argument("--models", nargs="+", default=None, help="entries: NAME or NAME:GHOST_RATIO")
    parser.add_argument("--plan", default=None, help="YAML plan: schedule, entries with seeds, teacher, claims")
    parser.add_argument("--output", default=None, help="default: outputs/comparison_<config or plan name>")
    parser.add_argument("--reuse", action="store_true",
                        help="do not retrain entries whose run has every epoch (their memory and wall time come "
                             "from the run's training_process.json; without one those columns stay blank), and "
                             "resume the ones that stopped part-way (`train.py --resume auto`; wall time then left "
                             "blank)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: measure and tabulate the runs that have finished")
    parser.add_argument("--records", default=None,
                        help="plans: the folder of every finished run's records and the tables (default: the plan's "
                             "`records`, else OUTPUT/records)")
    parser.add_argument("--only", nargs="+", default=None, metavar="TAG",
                        help="plans: train only these entries' missing runs (to answer one claim first, or to share "
                             "a plan between machines); the tables are left to a run of the whole plan or --report")
    parser.add_argument("--latency_repeats", type=int, default=30)
    parser.add_argument("--latency_rounds", type=int, default=3,
                        help="plans: round-robin latency passes (0: no latency measurement)")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    for key in PER_ENTRY_KEYS:
        if key in overrides:
            raise CompareError(f"--{key} is set per entry by compare_models.py; give entries with --models or a plan")
    if args.plan and (args.config or args.models):
        raise CompareError("--plan names the schedule and the entries: drop --config / --models")
    if not args.plan and (args.report or args.records or args.only):
        raise CompareError("--report, --records and --only work on a plan: give --plan FILE")
    if args.report and args.only:
        raise CompareError("--report trains nothing and tabulates every record: drop --only")
    return args, rest, overrides


def parse_entry(entry):
    """'name' or 'name:s' -> (name, ghost ratio or None, tag used as the run's directory)."""
    name, _, ratio = entry.partition(":")
    if not ratio:
        return name, None, name
    if not ratio.isdigit() or int(ratio) < 1:
        raise CompareError(f"entry '{entry}': the Ghost ratio after ':' must be a whole number >= 1")
    return name, int(ratio), f"{name}_s{ratio}"


def _fields(where, mapping, allowed, required=()):
    if not isinstance(mapping, dict):
        raise CompareError(f"{where}: expected a mapping, got {mapping!r}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise CompareError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    missing = [key for key in required if key not in mapping]
    if missing:
        raise CompareError(f"{where}: missing {', '.join(missing)}")
    return mapping


def _seeds(where, value):
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and s >= 0 for s in value):
        raise CompareError(f"{where}: seeds must be a non-empty list of whole numbers >= 0, got {value!r}")
    if len(set(value)) != len(value):
        raise CompareError(f"{where}: a seed is repeated in {value}")
    return tuple(value)


def load_plan(path):
    """The plan in a YAML file, every field checked (entries, seeds, teacher, claims) before anything trains."""
    if not os.path.isfile(path):
        raise CompareError(f"plan file not found: {path}")
    with open(path, encoding="utf-8") as f:
        plan = _fields(path, yaml.safe_load(f) or {}, ("config", "records", "seeds", "teacher", "entries", "claims"),
                       required=("config", "entries"))
    config = plan["config"] if os.path.isabs(plan["config"]) else os.path.join(REPO, plan["config"])
    seeds = _seeds(f"{path}: seeds", plan["seeds"]) if "seeds" in plan else (None,)
    teacher = None
    if "teacher" in plan:
        spec = _fields(f"{path}: teacher", plan["teacher"], ("model", "epochs"), required=("model", "epochs"))
        if not isinstance(spec["epochs"], int) or spec["epochs"] < 1:
            raise CompareError(f"{path}: teacher epochs must be a whole number >= 1, got {spec['epochs']!r}")
        teacher = Teacher(spec["model"], spec["epochs"])
    entries = []
    for i, spec in enumerate(plan["entries"] or []):
        where = f"{path}: entry {i + 1}"
        spec = _fields(where, spec, ("model", "tag", "ghost_ratio", "seeds", "overrides", "distill", "label"),
                       required=("model",))
        overrides = _fields(f"{where}: overrides", spec.get("overrides") or {}, _config_keys())
        clash = sorted(set(overrides) & set(PER_ENTRY_KEYS))
        if clash:
            raise CompareError(f"{where}: {', '.join(clash)} cannot be an override (set per entry by the plan)")
        distill = bool(spec.get("distill", False))
        if distill and teacher is None:
            raise CompareError(f"{where}: distill is set but the plan has no teacher")
        ratio = spec.get("ghost_ratio")
        entries.append(Entry(tag=str(spec.get("tag") or spec["model"]), model=spec["model"], ghost_ratio=ratio,
                             seeds=_seeds(f"{where}: seeds", spec["seeds"]) if "seeds" in spec else seeds,
                             overrides=tuple(sorted(overrides.items())), distill=distill,
                             label=str(spec.get("label", ""))))
    if not entries:
        raise CompareError(f"{path}: the plan has no entries")
    tags = [entry.tag for entry in entries]
    if len(set(tags)) != len(tags):
        raise CompareError(f"{path}: entry tags must be unique, got {tags}")
    claims = []
    for i, spec in enumerate(plan.get("claims") or []):
        spec = _fields(f"{path}: claim {i + 1}", spec, ("text", "better", "than"), required=("text", "better", "than"))
        for tag in (spec["better"], spec["than"]):
            if tag not in tags:
                raise CompareError(f"{path}: claim {i + 1} names '{tag}', which is not an entry tag ({', '.join(tags)})")
        claims.append(Claim(spec["text"], spec["better"], spec["than"]))
    records = plan.get("records")
    if records is not None and not os.path.isabs(records):
        records = os.path.join(REPO, records)
    return Plan(config, entries, teacher, claims, records)


def _config_keys():
    from src.config import Config
    return [field.name for field in dataclasses.fields(Config)]


def _epochs_done(run_dir):
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return len(json.load(f)["epochs"])


def _process_record(run_dir):
    """wall_s and peak_rss_mib of the process that trained run_dir (None each when it left no record)."""
    path = os.path.join(run_dir, PROCESS_RECORD)
    if not os.path.isfile(path):
        return {"wall_s": None, "peak_rss_mib": None}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def train(config, rest, flags, run_dir, resume=False):
    """train.py in a child process (continuing the run in run_dir when `resume`) -> (wall seconds, peak RSS MiB of
    that process)."""
    # The run's own flags after the command's, so that they win; a run that does not resume replaces its folder's.
    command = [sys.executable, os.path.join(REPO, "train.py"), "--config", config, *rest, *flags,
               "--output_dir", run_dir, *(["--resume", "auto"] if resume else ["--replace_run", "true"])]
    print(f"== {' '.join(command)}", flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO)
    _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child alone
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise CompareError(f"training {run_dir} failed with exit status {code}; its log is above, its outputs in "
                           f"{run_dir}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def ensure_trained(config, rest, flags, run_dir, epochs, reuse):
    """Train run_dir to `epochs` epochs unless `reuse` finds it done (or resumes it part-way); -> its process
    record, which is also written to the run directory."""
    if reuse and _epochs_done(run_dir) >= epochs:
        print(f"== {run_dir}: reusing the finished run", flush=True)
        return _process_record(run_dir)
    resume = reuse and bool(RunCheckpoints(run_dir, keep=0).resumable())
    if resume:
        print(f"== {run_dir}: resuming the unfinished run ({_epochs_done(run_dir)} of {epochs} epochs done); its "
              f"wall time will be left blank", flush=True)
    wall, peak = train(config, rest, flags, run_dir, resume)
    record = {"wall_s": None if resume else wall, "peak_rss_mib": peak}
    write_json_atomic(os.path.join(run_dir, PROCESS_RECORD), record)
    return record


def training_order(entries):
    """(entry, seed) pairs seed by seed: every entry's first seed, then every entry's second, ... so that a
    comparison stopped part-way has the same number of seeds of every arm."""
    for k in range(max(len(entry.seeds) for entry in entries)):
        for entry in entries:
            if k < len(entry.seeds):
                yield entry, entry.seeds[k]


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
    figures.update(_accuracy(run_dir))
    return figures


def _accuracy(run_dir):
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        epochs = json.load(f)["epochs"]
    tops = [row["val_top1"] for row in epochs if row["val_top1"] is not None]
    return dict(top1_last=100 * tops[-1], top1_best=100 * max(tops), epochs=len(epochs),
                train_time_s=sum(row["train_time_s"] for row in epochs))


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


# ---------------------------------------------------------------- plans: runs judged as deployed

def _python(script, *args):
    """Run one of the repo's entry points as a user would; its output passes through, a failure stops here."""
    command = [sys.executable, os.path.join(REPO, script), *args]
    print(f"== {' '.join(command)}", flush=True)
    code = subprocess.call(command, cwd=REPO)
    if code != 0:
        raise CompareError(f"{' '.join(command)} failed with exit status {code}; its output is above")


def final_checkpoint(run_dir, epochs):
    """The run's last epoch (no selection on the test split): the weights every plan figure is measured on."""
    return os.path.join(run_dir, f"epoch_{epochs:04d}.ckpt")


def deploy_run(run_dir, epochs):
    """Export the run's final weights (export.py checks each file against the checkpoint) and evaluate the MINDIR
    with validate.py -> {deployed top-1, training-form top-1 of the last epoch, report file name}."""
    ckpt, config = final_checkpoint(run_dir, epochs), os.path.join(run_dir, "config.yaml")
    mindir, onnx = (os.path.join(run_dir, f"deployed.{suffix}") for suffix in ("mindir", "onnx"))
    report = os.path.join(run_dir, f"eval_deployed_{load_config(config).val_split}.json")  # as validate.py names it
    for path, file_format in ((mindir, "MINDIR"), (onnx, "ONNX")):
        _python("export.py", "--config", config, "--ckpt_path", ckpt, "--file_format", file_format, "--output", path)
    _python("validate.py", "--config", config, "--mindir", mindir, "--output_dir", run_dir)
    with open(report, encoding="utf-8") as f:
        evaluated = json.load(f)
    deployed, trained = 100 * evaluated["top1"], _accuracy(run_dir)["top1_last"]
    if abs(deployed - trained) > DEPLOYED_AGREEMENT:
        raise CompareError(f"{run_dir}: the exported MINDIR scores {deployed:.2f}% but the same weights scored "
                           f"{trained:.2f}% in training form: the deployed network is not the trained one")
    return {"top1": deployed, "top1_training_form": trained, "report": os.path.basename(report)}


def _forms(cfg, ckpt):
    """(size figures, network in its inference form, input shape) of the config's model holding `ckpt`: params and
    MACs of the form that trains and of the re-parameterised, BN-folded form that is deployed."""
    import numpy as np
    import mindspore
    from src.analysis.profile import count_macs, count_params
    from src.configured_model import model_from_checkpoint
    from src.deploy import prepare_for_inference

    net, _, channels = model_from_checkpoint(cfg, ckpt)
    shape = (channels, cfg.image_size, cfg.image_size)
    figures = {"params_m": count_params(net) / 1e6, "macs_m": count_macs(net, shape) / 1e6}
    prepare_for_inference(net, mindspore.Tensor(np.zeros((1, *shape), np.float32)))
    figures.update(deployed_params_m=count_params(net) / 1e6, deployed_macs_m=count_macs(net, shape) / 1e6)
    return figures, net, shape


def architecture_forms(record_dir, workdir):
    """(MindSpore inference form, exported ONNX model, input shape) of a recorded run's architecture, for latency.

    Latency depends on the architecture, not on the weights, and a record keeps no weights (its run may have been
    trained in another session, its checkpoints gone): fresh weights of the recorded config are exported by
    export.py like any run's, and the ONNX file it checked is what ONNX Runtime runs."""
    from src.checkpoint import save_checkpoint
    from src.configured_model import Sizes, for_this_device, model_for_data
    from src.deploy import load_exported

    config = os.path.join(record_dir, "config.yaml")
    cfg = load_config(config)
    with open(os.path.join(record_dir, RUN_RECORD), encoding="utf-8") as f:
        run = json.load(f)
    os.makedirs(workdir, exist_ok=True)
    ckpt, onnx = os.path.join(workdir, "fresh_weights.ckpt"), os.path.join(workdir, "architecture.onnx")
    net = model_for_data(cfg, Sizes(run["num_classes"], run["in_channels"]))
    save_checkpoint(ckpt, dict(net.parameters_and_names()))
    _python("export.py", "--config", config, "--ckpt_path", ckpt, "--file_format", "ONNX", "--output", onnx)
    _, net, shape = _forms(cfg, ckpt)
    return for_this_device(net, cfg), load_exported(onnx), shape


def latency_pass(forms, repeats, rounds):
    """{tag: {latency_ms, onnxruntime_ms, rounds}}: batch-1 latency of each entry's inference form (graph mode) and
    of its ONNX file in ONNX Runtime, round-robin over the entries `rounds` times (a slow spell of the host hits every
    entry alike); each figure is the median round."""
    import numpy as np
    import mindspore
    from src.analysis.profile import measure_latency

    def measure(tag):
        net, onnx, shape = forms[tag]
        batch = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        return {"latency_ms": measure_latency(net, shape, repeats=repeats),
                "onnxruntime_ms": harness.median_seconds(lambda: onnx(batch), repeats) * 1e3}

    timings = harness.round_robin(list(forms), rounds, measure)
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    return {tag: {**{key: statistics.median(r[key] for r in results) for key in results[0]},
                  "rounds": {key: [round(r[key], 3) for r in results] for key in results[0]}}
            for tag, results in timings.items()}


def spread(values):
    """(mean, sample standard deviation or None for one value, n)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def judge_claim(claim, summaries):
    """Difference of the two entries' mean top-1 with its standard error (Welch: sqrt(s1^2/n1 + s2^2/n2)) and a
    verdict: holds when the difference exceeds twice its standard error, reversed when it is below minus twice."""
    better, than = summaries.get(claim.better), summaries.get(claim.than)
    result = {"text": claim.text, "better": claim.better, "than": claim.than}
    if not better or not than:
        return {**result, "difference": None, "se": None, "verdict": "not run yet"}
    difference = better["mean"] - than["mean"]
    if better["n"] < 2 or than["n"] < 2:
        return {**result, "difference": difference, "se": None, "verdict": "untested: needs 2 seeds of each"}
    se = math.sqrt(better["std"] ** 2 / better["n"] + than["std"] ** 2 / than["n"])
    verdict = ("holds" if difference > 2 * se else "reversed" if difference < -2 * se
               else "not shown: the difference is within 2 standard errors")
    return {**result, "difference": difference, "se": se, "verdict": verdict}


def _pm(mean, std):
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def plan_tables(rows, summaries, claims):
    """Markdown: one line per entry (mean ± std over seeds, each seed, deployed size and latency), then the claims."""
    lines = ["| entry | model | seeds | test top-1 (%), deployed MINDIR: mean ± std | per seed | params (M), training "
             "-> deployed | MACs (M), deployed | latency bs 1 (ms): MindSpore inference form / ONNX Runtime | "
             "training time per seed (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for tag, summary in summaries.items():
        runs = [row for row in rows if row["tag"] == tag]
        first = runs[0]
        per_seed = ", ".join(f"{row['seed']}: {row['top1']:.2f}" for row in runs)
        latency = ("" if "latency_ms" not in summary
                   else f"{summary['latency_ms']:.2f} / {summary['onnxruntime_ms']:.2f}")
        lines.append(f"| {tag} | {first['model']} | {summary['n']} | {_pm(summary['mean'], summary['std'])} | "
                     f"{per_seed} | {first['params_m']:.2f} -> {first['deployed_params_m']:.2f} | "
                     f"{first['deployed_macs_m']:.2f} | {latency} "
                     f"| {statistics.fmean(row['train_time_s'] for row in runs):.0f} |")
    if claims:
        lines += ["", "| claim | entries | difference of means (points) | standard error | verdict |",
                  "|---|---|---|---|---|"]
        for claim in claims:
            difference = "" if claim["difference"] is None else f"{claim['difference']:+.2f}"
            se = "" if claim["se"] is None else f"{claim['se']:.2f}"
            lines.append(f"| {claim['text']} | {claim['better']} vs {claim['than']} | {difference} | {se} | "
                         f"{claim['verdict']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- plans: records, the comparison's memory

RUN_RECORD = "run.json"  # written last into a record folder: its presence means the run is finished and judged
RECORD_FILES = ("config.yaml", "metrics.json", PROCESS_RECORD)  # and the evaluation report of the deployed file
TEACHER_WEIGHTS = "teacher_weights.ckpt"
# Keys a run's config may hold with another value than the plan's and still be the plan's run: how train.py was
# run (its folder, resume, replace), the teacher file's path (its content is pinned by a hash), the device `auto`
# resolved to.
RECIPE_FREE_KEYS = RUN_CONTROL | {"teacher_ckpt", "device_target"}


def _recorded(record_dir):
    """The record's run.json, or None while the run is not finished and judged."""
    path = os.path.join(record_dir, RUN_RECORD)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _recipe(cfg):
    """The config as config.yaml holds it (YAML types: lists, not tuples)."""
    return yaml.safe_load(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


def check_recipe(record_dir, expected):
    """A record counts for the plan only if it was trained with the plan's recipe: any other key is an error that
    names it (a changed schedule must not mix old runs into a new table)."""
    with open(os.path.join(record_dir, "config.yaml"), encoding="utf-8") as f:
        recorded = yaml.safe_load(f)
    wanted = _recipe(expected)
    differ = [key for key in wanted if key not in RECIPE_FREE_KEYS and recorded.get(key) != wanted[key]]
    if differ:
        listed = ", ".join(f"{key} (recorded {recorded.get(key)!r}, the plan {wanted[key]!r})" for key in differ)
        raise CompareError(f"{record_dir} was trained with another recipe: {listed}; remove that folder to train the "
                           f"run again under this plan")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_records(run_dir, record_dir):
    os.makedirs(record_dir, exist_ok=True)
    for name in RECORD_FILES + tuple(n for n in os.listdir(run_dir) if n.startswith("eval_deployed_")
                                     and n.endswith(".json")):
        if os.path.isfile(os.path.join(run_dir, name)):
            copy_atomic(os.path.join(run_dir, name), os.path.join(record_dir, name))


def host():
    """Where a run trained: its figure is deterministic for a seed, code and CPU, and CPUs sum floats differently."""
    from src.runtime import cpu_flags, cpu_model
    return f"{cpu_model()}, {os.cpu_count()} CPUs{', AVX-512' if 'avx512f' in cpu_flags() else ''}"


def record_run(entry, seed, run_dir, record_dir, epochs, teacher_weights=None):
    """Judge one trained run as deployed and write its record (run.json last): from then on the plan counts it as
    done, in this session or a later one, with or without its checkpoints."""
    judged = deploy_run(run_dir, epochs)
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    figures, net, shape = _forms(cfg, final_checkpoint(run_dir, epochs))
    head = [p for name, p in net.parameters_and_names() if name.endswith("weight")][-1]
    _copy_records(run_dir, record_dir)
    run = {"tag": entry.tag, "model": entry.model, "seed": seed, "label": entry.label, **judged,
           **_process_record(run_dir), **_accuracy(run_dir), **figures, "num_classes": int(head.shape[0]),
           "in_channels": shape[0], "host": host(), "load_average_at_end": os.getloadavg()[0]}
    if teacher_weights:
        run["teacher_weights_sha256"] = _sha256(teacher_weights)
    write_json_atomic(os.path.join(record_dir, RUN_RECORD), run)
    print(f"== {entry.tag} seed {seed}: recorded in {record_dir}: deployed top-1 {run['top1']:.2f}%", flush=True)
    return run


def ensure_teacher(plan, config, rest, overrides, output, records, reuse):
    """The teacher's weights file in the records (trained first if it is not there): its final EMA weights alone,
    kept with its record so that distilling runs of a later session learn from the same teacher (its hash is in
    run.json)."""
    teacher = plan.teacher
    record_dir = os.path.join(records, teacher.tag)
    weights = os.path.join(record_dir, TEACHER_WEIGHTS)
    expected = load_config(config, dict(overrides, model=teacher.model, epochs=teacher.epochs))
    if _recorded(record_dir):
        check_recipe(record_dir, expected)
        return weights
    from src.checkpoint import model_weights, read_checkpoint, save_checkpoint

    run_dir = os.path.join(output, teacher.tag)
    ensure_trained(config, rest, ["--model", teacher.model, "--epochs", str(teacher.epochs)], run_dir,
                   teacher.epochs, reuse)
    final = final_checkpoint(run_dir, teacher.epochs)
    tensors, kind = model_weights(read_checkpoint(final)[0], final)
    _copy_records(run_dir, record_dir)
    save_checkpoint(weights, tensors)
    write_json_atomic(os.path.join(record_dir, RUN_RECORD),
                      {"tag": teacher.tag, "model": teacher.model, "epochs_planned": teacher.epochs,
                       "weights": TEACHER_WEIGHTS, "weights_kind": kind, "weights_sha256": _sha256(weights),
                       **_process_record(run_dir), **_accuracy(run_dir), "host": host(),
                       "load_average_at_end": os.getloadavg()[0]})
    return weights


def run_plan(plan, args, rest, overrides, output, records):
    """Train and judge what the records lack (unless --report), then tabulate every record."""
    def entry_config(entry, seed, teacher_model=""):
        values = dict(overrides, **dict(entry.overrides), model=entry.model,
                      **({} if entry.ghost_ratio is None else {"ghost_ratio": entry.ghost_ratio}),
                      **({} if seed is None else {"seed": seed}))
        if teacher_model:  # a stand-in path: the teacher's file is pinned by its hash, not by where it lies
            values.update(teacher_model=teacher_model, teacher_ckpt=TEACHER_WEIGHTS)
        return load_config(plan.config, values)

    schedule = load_config(plan.config, overrides)
    teacher_model = plan.teacher.model if plan.teacher else ""
    tags = [entry.tag for entry in plan.entries]
    unknown = sorted(set(args.only or ()) - set(tags))
    if unknown:
        raise CompareError(f"--only {' '.join(unknown)}: not an entry of {args.plan} (its entries: {', '.join(tags)})")
    for entry, seed in training_order(plan.entries):  # every run's config loads, every record fits, before training
        expected = entry_config(entry, seed, teacher_model if entry.distill else "")
        if _recorded(entry.run_dir(records, seed)):
            check_recipe(entry.run_dir(records, seed), expected)
    teacher_weights = None
    for entry, seed in training_order(plan.entries):
        record_dir = entry.run_dir(records, seed)
        if args.report or _recorded(record_dir) or (args.only and entry.tag not in args.only):
            continue
        flags = entry.flags() + ([] if seed is None else ["--seed", str(seed)])
        if entry.distill:
            teacher_weights = teacher_weights or ensure_teacher(plan, plan.config, rest, overrides, output, records,
                                                                args.reuse)
            flags += ["--teacher_model", plan.teacher.model, "--teacher_ckpt", teacher_weights]
        run_dir = entry.run_dir(output, seed)
        ensure_trained(plan.config, rest, flags, run_dir, schedule.epochs, args.reuse)
        record_run(entry, seed, run_dir, record_dir, schedule.epochs, teacher_weights if entry.distill else None)
    if args.only:
        print(f"every run of {', '.join(args.only)} is recorded in {records}; the tables there are rebuilt by "
              f"--report or by a run of the whole plan")
        return 0

    rows = [dict(run, seed=seed) for entry, seed in training_order(plan.entries)
            if (run := _recorded(entry.run_dir(records, seed)))]
    if not rows:
        print(f"no finished run is recorded in {records} yet")
        return 0
    tags = [entry.tag for entry in plan.entries if any(row["tag"] == entry.tag for row in rows)]
    latency = {}
    if args.latency_rounds:
        forms = {}
        for tag in tags:  # one architecture per entry: its first recorded seed's config
            first = next(row for row in rows if row["tag"] == tag)
            entry = next(entry for entry in plan.entries if entry.tag == tag)
            forms[tag] = architecture_forms(entry.run_dir(records, first["seed"]),
                                            os.path.join(output, "latency", tag))
        latency = latency_pass(forms, args.latency_repeats, args.latency_rounds)
    summaries = {}
    for tag in tags:
        mean, std, n = spread([row["top1"] for row in rows if row["tag"] == tag])
        summaries[tag] = {"mean": mean, "std": std, "n": n, **latency.get(tag, {})}
    claims = [judge_claim(claim, summaries) for claim in plan.claims]
    teacher = _recorded(os.path.join(records, plan.teacher.tag)) if plan.teacher else None
    for row in rows:
        if "teacher_weights_sha256" in row and row["teacher_weights_sha256"] != (teacher or {}).get("weights_sha256"):
            raise CompareError(f"{row['tag']} seed {row['seed']} learnt from another teacher than the one recorded "
                               f"in {os.path.join(records, plan.teacher.tag)}: remove its record to train it again")
    write_json_atomic(os.path.join(records, "comparison.json"),
                      {"plan": os.path.relpath(args.plan, REPO), "overrides": rest, "rows": rows,
                       "summaries": summaries, "claims": claims, "teacher": teacher,
                       "latency_load_average": os.getloadavg()[0] if latency else None})
    text = plan_tables(rows, summaries, claims)
    write_text_atomic(os.path.join(records, "comparison.md"), text + "\n")
    print(text)
    return 0


def main(argv=None):
    args, rest, overrides = parse_args(argv)
    if args.plan:
        plan = load_plan(args.plan)
        output = args.output or os.path.join("outputs", "comparison_" + os.path.splitext(os.path.basename(args.plan))[0])
        records = args.records or plan.records or os.path.join(output, "records")
        os.makedirs(output, exist_ok=True)
        os.makedirs(records, exist_ok=True)
        return run_plan(plan, args, rest, overrides, output, records)
    config = args.config or os.path.join(REPO, "configs", "comparison", "fashion_mnist.yaml")
    cfg = load_config(config, overrides)
    entries = [parse_entry(entry) for entry in args.models or DEFAULT_MODELS]
    output = args.output or os.path.join("outputs", "comparison_" + os.path.splitext(os.path.basename(config))[0])
    os.makedirs(output, exist_ok=True)

    runs = {}
    for name, ratio, tag in entries:
        flags = Entry(tag, name, ratio).flags()
        runs[tag] = ensure_trained(config, rest, flags, os.path.join(output, tag), cfg.epochs, args.reuse)

    rows = []
    for name, ratio, tag in entries:
        entry_cfg = load_config(config, dict(overrides, model=name, **({} if ratio is None else
                                                                        {"ghost_ratio": ratio})))
        row = {"tag": tag, "model": name, "ghost_ratio": ratio, **runs[tag]}
        row.update(measure(entry_cfg, os.path.join(output, tag), args.latency_repeats))
        rows.append(row)
        print(f"== {tag}: {json.dumps(row)}", flush=True)

    write_json_atomic(os.path.join(output, "comparison.json"), {"config": config, "overrides": rest, "rows": rows})
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
