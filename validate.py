"""Evaluate a checkpoint: top-1/top-5, loss, per-class precision/recall/F1, macro averages, confusion matrix.

    python validate.py --config configs/ghostnet/ghostnet_100_fashion_mnist.yaml \\
        --ckpt_path outputs/ghostnet_100_fashion_mnist/best.ckpt
    python validate.py --config configs/ghostnet/ghostnet_100_fashion_mnist.yaml \\
        --mindir outputs/ghostnet_100_fashion_mnist/ghostnet_100_fashion_mnist.mindir
Evaluates cfg.val_split (override with --val_split), prints a report and writes it to output_dir as JSON
(eval_<checkpoint>_<split>.json) and its confusion matrix as a PNG heat map beside it (same name, .png).
A checkpoint that does not fit the model is an error naming the keys; EMA weights are used when present.
Labels are numbered by the checkpoint's class names (written by training), else by the training split's classes
(class folders of train_split for folder data); a split with a class folder outside them is an error.
The config keys validate.py reads are flags (--key value; --help lists them); the device is the best one this
MindSpore build and machine can use unless --device_target names one.
"""
import os
import sys
import warnings

import src  # noqa: F401  (before mindspore: caps oneDNN's ISA)
from src.atomic_files import WriteError, write_json_atomic
from src.checkpoint import CheckpointError, checkpoint_class_names, load_weights
from src.config import ConfigError, config_from_command_line
from src.configured_model import for_this_device, model_for_data
from src.data import DatasetError, DatasetNotFoundError, create_dataset, split_class_names
from src.deploy import ExportedModelError, load_exported
from src.device import setup_context
from src.engine import evaluate, format_report, mixed_precision, plot_confusion_matrix


def load_network(cfg, info):
    """The callable to evaluate: the configured model holding the checkpoint's weights (every key matched)."""
    network = for_this_device(model_for_data(cfg, info), cfg)
    kind = load_weights(network, cfg.ckpt_path)
    print(f"loaded {'EMA' if kind == 'ema' else 'trained'} weights of {cfg.model} from {cfg.ckpt_path}")
    return mixed_precision(network, cfg.amp_level)


def class_names_for_labels(cfg):
    """What label k means -> (class names, where they come from): the checkpoint's class k when it names them,
    else the training split's class k.

    None (the evaluated split's own classes) only when neither can be read, with a warning: old checkpoints of a
    folder dataset whose train split is not at hand number the labels as if it had the same class folders."""
    names = checkpoint_class_names(cfg.ckpt_path) if cfg.ckpt_path else None
    if names is not None:
        return names, cfg.ckpt_path
    try:
        return split_class_names(cfg, cfg.train_split), f"the {cfg.train_split} split"
    except DatasetNotFoundError as err:
        warnings.warn(f"{cfg.mindir or cfg.ckpt_path} names no classes and the training split cannot be read "
                      f"({err}): the {cfg.val_split} split's labels are numbered by its own classes, which is right "
                      f"only if training had the same class folders", UserWarning, stacklevel=2)
        return None, f"the {cfg.val_split} split itself"


def write_report(report: dict, cfg) -> str:
    """The JSON report and its confusion-matrix PNG; returns the JSON's path."""
    name = os.path.splitext(os.path.basename(cfg.mindir or cfg.ckpt_path))[0]
    stem = os.path.join(cfg.output_dir, f"eval_{name}_{cfg.val_split}")
    os.makedirs(cfg.output_dir, exist_ok=True)
    write_json_atomic(f"{stem}.json", report)
    plot_confusion_matrix(report, f"{stem}.png")
    return f"{stem}.json"


def main(argv=None) -> dict:
    cfg = config_from_command_line(argv, __doc__, "validate.py")
    if bool(cfg.ckpt_path) == bool(cfg.mindir):
        raise ConfigError("validate.py needs exactly one of --ckpt_path CHECKPOINT and --mindir EXPORTED_FILE")
    device = setup_context(cfg)
    class_names, named_by = class_names_for_labels(cfg)
    dataset, info = create_dataset(cfg, cfg.val_split, training=False, class_names=class_names)
    print(f"{cfg.model} on {cfg.dataset} ({cfg.val_split}, {info.num_samples} images) | {device}, {cfg.mode} mode")
    print(f"{info.num_classes} classes, named and numbered as in {named_by}")
    if cfg.mindir:
        network = load_exported(cfg.mindir)
        print(f"loaded exported {cfg.model} from {cfg.mindir}")
    else:
        network = load_network(cfg, info)
    report = evaluate(network, dataset, info.num_classes, info.class_names)
    report = {"model": cfg.model, "checkpoint": cfg.mindir or cfg.ckpt_path, "dataset": cfg.dataset,
              "split": cfg.val_split, **report}
    print(format_report(report))
    path = write_report(report, cfg)
    print(f"report written to {path} (confusion matrix: {os.path.splitext(path)[0]}.png)")
    return report


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DatasetError, CheckpointError, ExportedModelError, WriteError) as err:
        sys.exit(f"validate.py: error: {err}")
