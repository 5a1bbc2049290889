"""Write the results page of a finished training run: the evaluation report, the training curves and, when the
run was repeated, how close the repeat came. The README's Fashion-MNIST results are this script's output.

    python scripts/results_page.py --run outputs/ghostnet_100_small_fashion_mnist \\
        --eval outputs/ghostnet_100_small_fashion_mnist/eval_epoch_0030_test.json \\
        --rerun outputs/ghostnet_100_small_fashion_mnist_rerun \\
        --page docs/results/ghostnet_100_small_fashion_mnist.md

`--run` is a train.py output directory (config.yaml, metrics.json); `--eval` a validate.py report of one of its
checkpoints; `--rerun` another output directory of the same command (its metrics.json), for the reproduction
line. The page (Markdown) goes to `--page`; its images (loss and accuracy curves, the confusion matrix) to a
folder beside it named as the page without `.md`, with the run's record: its config.yaml, metrics.json and the
report as eval.json. That folder is itself a run directory for `--run` and `--rerun`, so a published page can be
remade, and a later repeat judged against it, after the output directory is gone. Training time is the sum over
epochs of the training and validation time train.py recorded (graph compilation and start-up excluded; a resumed
run counts each epoch once).
"""
import argparse
import json
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.atomic_files import WriteError, copy_atomic, write_text_atomic  # noqa: E402
from src.engine.history import MetricsHistory  # noqa: E402
from src.engine.plots import plot_confusion_matrix, plot_curves  # noqa: E402

REPRODUCE_TOLERANCE = 0.3  # points of top-1 a repeat of the command may differ by (the bar)
CONFIG_KEYS = ("model", "small_input", "dataset", "image_size", "batch_size", "epochs", "optimizer", "lr",
               "weight_decay", "scheduler", "warmup_epochs", "label_smoothing", "random_crop_padding", "hflip",
               "re_prob", "mixup", "cutmix", "drop_rate", "ema", "ema_decay", "seed", "mode")


class ResultsError(ValueError):
    """A run directory or report that cannot make a page; the message names the file."""


def _load(path, kind, loader=json.load):
    if not os.path.isfile(path):
        raise ResultsError(f"{kind} not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return loader(f)
        except (ValueError, yaml.YAMLError) as err:
            raise ResultsError(f"{kind} {path} is not readable: {err}") from err


def load_run(directory):
    """(config dict, metrics dict) of a train.py output directory."""
    config = _load(os.path.join(directory, "config.yaml"), "run config", yaml.safe_load)
    metrics = _load(os.path.join(directory, "metrics.json"), "run metrics")
    if not metrics.get("epochs"):
        raise ResultsError(f"{directory}/metrics.json has no finished epoch")
    return config, metrics


def run_summary(metrics):
    """Last and best validation top-1 (%), epochs and training time (s) of a run's metrics.json."""
    epochs = metrics["epochs"]
    tops = [row["val_top1"] for row in epochs if row["val_top1"] is not None]
    seconds = sum(row["train_time_s"] + (row["val_time_s"] or 0.0) for row in epochs)
    return {"epochs": len(epochs), "top1_last": 100 * tops[-1] if tops else None,
            "top1_best": 100 * max(tops) if tops else None, "time_s": seconds}


def _hours(seconds):
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _pct(value):
    return f"{100 * value:.2f}"


def render(config, metrics, report, images, rerun=None, commands=()):
    """The page's Markdown. `images`: names of the loss, accuracy and confusion-matrix PNGs relative to the page."""
    summary = run_summary(metrics)
    macro, weighted = report["macro_avg"], report["weighted_avg"]
    lines = [f"# {config['model']} on {report['dataset']} ({report['split']} split)", ""]
    if commands:
        lines += ["Reproduce:", "", "```", *commands, "```", ""]
    lines += ["## Recipe", "", "| key | value |", "|---|---|"]
    lines += [f"| {key} | {config[key]} |" for key in CONFIG_KEYS if key in config]
    lines += ["", "## Training", "",
              f"{summary['epochs']} epoch{'s' if summary['epochs'] != 1 else ''} in {_hours(summary['time_s'])} of "
              f"training and validation ({summary['time_s'] / summary['epochs']:.0f} s per epoch); "
              + ("no validation during training." if summary["top1_last"] is None else
                 f"validation top-1 after the last epoch {summary['top1_last']:.2f}%, best epoch "
                 f"{summary['top1_best']:.2f}%."), "",
              f"![loss]({images[0]}) ![accuracy]({images[1]})", ""]
    if rerun is not None:
        again = run_summary(rerun)
        if None in (summary["top1_last"], again["top1_last"]):
            raise ResultsError("--rerun compares validation top-1, which one of the runs did not record")
        if again["epochs"] != summary["epochs"]:
            raise ResultsError(f"--rerun has {again['epochs']} finished epochs and the run {summary['epochs']}: "
                               "only a repeat of the whole run can be judged against it")
        gap = abs(again["top1_last"] - summary["top1_last"])
        lines += ["## Reproduction", "", "The same command run a second time, in a fresh output directory:", "",
                  "| run | epochs | last-epoch top-1 (%) | best top-1 (%) | training time |", "|---|---|---|---|---|",
                  f"| first | {summary['epochs']} | {summary['top1_last']:.2f} | {summary['top1_best']:.2f} | "
                  f"{_hours(summary['time_s'])} |",
                  f"| repeat | {again['epochs']} | {again['top1_last']:.2f} | {again['top1_best']:.2f} | "
                  f"{_hours(again['time_s'])} |", "",
                  f"Difference in last-epoch top-1: {gap:.2f} points "
                  f"({'within' if gap <= REPRODUCE_TOLERANCE else 'outside'} {REPRODUCE_TOLERANCE} points).", ""]
    lines += ["## Evaluation", "", f"`{report['checkpoint']}` on {report['num_samples']} images:", "",
              "| top-1 (%) | top-5 (%) | loss | macro precision | macro recall | macro F1 | weighted F1 |",
              "|---|---|---|---|---|---|---|",
              f"| {_pct(report['top1'])} | {_pct(report['top5'])} | {report['loss']:.4f} | {macro['precision']:.4f} | "
              f"{macro['recall']:.4f} | {macro['f1']:.4f} | {weighted['f1']:.4f} |", "",
              "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {row['class']} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
              for row in report["per_class"]]
    names = report["class_names"]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class):", "",
              "| true \\ predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(str(v) for v in row) + " |"
              for name, row in zip(names, report["confusion_matrix"])]
    lines += ["", f"![confusion matrix]({images[2]})", ""]
    return "\n".join(lines)


def keep_record(run_dir, eval_path, record_dir):
    """Copy the run's config.yaml and metrics.json and the report (as eval.json) into record_dir, atomically each."""
    for source, name in ((os.path.join(run_dir, "config.yaml"), "config.yaml"),
                         (os.path.join(run_dir, "metrics.json"), "metrics.json"), (eval_path, "eval.json")):
        target = os.path.join(record_dir, name)
        if os.path.abspath(source) != os.path.abspath(target):
            copy_atomic(source, target)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--run", required=True, help="train.py output directory")
    parser.add_argument("--eval", required=True, help="validate.py report (JSON) of a checkpoint of that run")
    parser.add_argument("--rerun", help="output directory of the same command run again")
    parser.add_argument("--page", required=True, help="Markdown file to write")
    parser.add_argument("--command", action="append", default=[],
                        help="a command line that reproduces the run (repeatable; shown at the top)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    config, metrics = load_run(args.run)
    report = _load(args.eval, "evaluation report")
    rerun = load_run(args.rerun)[1] if args.rerun else None
    image_dir = os.path.splitext(args.page)[0]
    os.makedirs(image_dir, exist_ok=True)
    plot_curves(MetricsHistory(image_dir, metrics["epochs"], metrics["steps"]), image_dir)
    plot_confusion_matrix(report, os.path.join(image_dir, "confusion_matrix.png"))
    folder = os.path.basename(image_dir)
    images = [f"{folder}/{name}" for name in ("loss_curve.png", "accuracy_curve.png", "confusion_matrix.png")]
    text = render(config, metrics, report, images, rerun, args.command)
    keep_record(args.run, args.eval, image_dir)
    write_text_atomic(args.page, text)
    print(f"results page written to {args.page} (images in {image_dir})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ResultsError, WriteError) as err:
        print(f"results_page.py: error: {err}", file=sys.stderr)
        sys.exit(2)
