"""Two-stage configuration: a YAML file gives defaults, `--key value` flags override them.

The schema is the `Config` dataclass below: one flat namespace (so every key can be overridden as `--key`),
grouped by the subsystem that reads it. Values are type-checked, unknown keys are an error naming the closest
valid key, and the resolved config is written next to the checkpoints.
"""
import argparse
import dataclasses
import difflib
import os
import textwrap
import typing
from dataclasses import dataclass, field
from typing import List, Optional

import yaml

from src.atomic_files import write_atomic


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and the problem."""


def _key(default, text: str, section: str = "", note: str = ""):
    """A Config field with its --help text in the field's metadata; `section` (with its `note`) starts a group."""
    metadata = {"help": text, **({"section": section, "note": note} if section else {})}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Config:
    """Every config key, by the subsystem that reads it; `_key()` holds its --help text (config_help)."""
    model: str = _key("ghostnet_100", "registered model name (src/models, list_models())", section="model")
    num_classes: Optional[int] = _key(None, "null: taken from the dataset")
    in_channels: Optional[int] = _key(None, "null: taken from the dataset (1 for MNIST-like data)")
    small_input: bool = _key(False, "stride-1 stem and one fewer downsampling, for 28-32 px images")
    drop_rate: float = _key(0.2, "dropout before the classifier")
    width: Optional[float] = _key(None, "width multiplier override for families that take one")
    ghost_ratio: Optional[int] = _key(None, "Ghost module ratio s override (ghost_vgg16: 1 = plain convs; "
                                            "ghost_resnet*)")
    pretrained: str = _key("", "checkpoint to fine-tune from; a head of another size is dropped and re-initialised")

    dataset: str = _key("fashion_mnist", "imagenet | folder | mnist | fashion_mnist | cifar10 | pets", section="data")
    data_dir: str = _key("/usr/share/datasets/fashion-mnist", "the dataset's root folder")
    train_split: Optional[str] = _key(None, "null: the dataset's (train); folder / imagenet: the subfolder of data_dir")
    val_split: Optional[str] = _key(None, "null: the dataset's (folder / imagenet: val; mnist, fashion_mnist, cifar10, "
                                          "pets: test)")
    image_size: int = _key(224, "input height and width in pixels")
    batch_size: int = _key(128, "per device")
    eval_batch_size: Optional[int] = _key(None, "null: same as batch_size")
    num_workers: int = _key(2, "data-loading workers per pipeline stage of each process (at most this "
                                    "host's CPUs divided by the processes the launcher started on it)")
    crop_pct: Optional[float] = _key(None, "eval resize = image_size / crop_pct; null: 0.875 for ImageNet-like data, "
                                           "the whole image for small data")
    interpolation: str = _key("bilinear", "resize filter: nearest | bilinear | bicubic | area")
    mean: Optional[List[float]] = _key(None, "normalisation mean per channel, in [0, 1]; null: the dataset's own")
    std: Optional[List[float]] = _key(None, "normalisation std per channel, in [0, 1] units; null: the dataset's own")
    scale: List[float] = _key([0.08, 1.0], "random resized crop area range")
    ratio: List[float] = _key([3.0 / 4.0, 4.0 / 3.0], "random resized crop aspect range")
    random_crop_padding: int = _key(0, ">0: pad-and-crop (CIFAR style) instead of random resized crop")
    hflip: float = _key(0.5, "horizontal flip probability")
    color_jitter: float = _key(0.0, "brightness / contrast / saturation jitter strength; 0 disables")
    auto_augment: str = _key("", 'e.g. "rand-m9-mstd0.5" for RandAugment magnitude 9')
    re_prob: float = _key(0.0, "random erasing probability")
    mixup: float = _key(0.0, "mixup alpha; 0 disables")
    cutmix: float = _key(0.0, "cutmix alpha; 0 disables")
    mixup_prob: float = _key(1.0, "probability that a batch is mixed when mixup or cutmix is on")
    bad_images: str = _key("error", "error | skip: what to do with an unreadable image")

    epochs: int = _key(10, "training epochs", section="optimisation")
    optimizer: str = _key("sgd", "sgd | rmsprop | adam | adamw")
    lr: float = _key(0.1, "for the global batch (per-device batch x devices); see configs/README.md")
    momentum: float = _key(0.9, "sgd / rmsprop momentum")
    nesterov: bool = _key(False, "sgd: Nesterov momentum")
    weight_decay: float = _key(4e-5, "L2 penalty (decoupled for adamw)")
    filter_bias_and_bn: bool = _key(True, "no weight decay on BN parameters and biases")
    opt_eps: float = _key(1e-8, "rmsprop / adam / adamw: epsilon added to the denominator")
    betas: List[float] = _key([0.9, 0.999], "adam / adamw")
    rmsprop_decay: float = _key(0.9, "rmsprop: moving-average factor of the squared gradients (PyTorch's alpha)")
    scheduler: str = _key("cosine", "cosine | step | exponential | constant")
    warmup_epochs: float = _key(0.0, "linear warm-up from warmup_lr to lr over this many epochs")
    warmup_lr: float = _key(0.0, "learning rate at the start of the warm-up")
    min_lr: float = _key(1e-6, "cosine: the final learning rate; step / exponential: the floor")
    decay_epochs: float = _key(30.0, "step / exponential: decay every this many epochs")
    decay_rate: float = _key(0.1, "step / exponential: the factor applied at each decay")
    label_smoothing: float = _key(0.1, "share of the target mass spread evenly over all classes")
    ema: bool = _key(False, "keep an exponential moving average of the weights; validate and keep best on it")
    ema_decay: float = _key(0.9999, "upper bound; early on the decay is (1 + n) / (10 + n) after n updates")
    clip_grad_norm: float = _key(0.0, "0 disables")
    amp_level: str = _key("O0", "O0 | O1 | O2 | O3")
    loss_scale: str = _key("none", "none | fixed | dynamic")
    loss_scale_value: float = _key(1024.0, "fixed: the scale; dynamic: the initial scale")
    seed: int = _key(42, "seeds weight init, shuffling and augmentation")

    teacher_model: str = _key("", "registered model name of the teacher (with teacher_ckpt); small_input as the "
                                  "student's", section="knowledge distillation (train.py; src/engine/distill.py)",
                              note="The teacher scores the student's training batches in inference mode; it must "
                                   "predict the same classes.")
    teacher_ckpt: str = _key("", "the teacher's weights (every key and shape must fit teacher_model)")
    teacher_mindir: str = _key("", "or: an exported teacher (.mindir, or .onnx with onnxruntime) instead of the two "
                                   "above")
    kd_temperature: float = _key(1.0, "T: both softmaxes are taken of logits / T")
    kd_weight: float = _key(0.5, "alpha: loss = (1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher || student)")

    mode: str = _key("graph", "graph | pynative", section="run")
    device_target: str = _key("auto", "auto | CPU | GPU | Ascend; auto: Ascend, else GPU, else CPU, whichever this "
                                      "MindSpore build and machine can use (the run's first line names it)")
    device_id: Optional[int] = _key(None, "GPU / Ascend: the device of this host to use; null: the process's local "
                                          "rank under mpirun, msrun's choice under msrun, 0 alone (not used on CPU)")
    cpu_kernels: str = _key("auto", "auto | off: on CPU, swap in src/kernels' fast cells (auto: when g++ builds them)")
    output_dir: str = _key("outputs/run", "where the run's files go")
    ckpt_interval: int = _key(1, "save the latest checkpoint every this many epochs")
    ckpt_interval_steps: int = _key(0, ">0: also save a resumable mid-epoch checkpoint every this many steps")
    max_nonfinite_steps: int = _key(5, "stop after this many steps in a row with a non-finite loss or gradients "
                                       "(loss-scale overflows included: only a streak stops the run); such steps "
                                       "change no weight")
    keep_checkpoints: int = _key(3, "epoch checkpoints kept in output_dir (older ones are deleted)")
    log_interval: int = _key(50, "steps between progress lines")
    val_interval: int = _key(1, "epochs between validations; 0 disables validation during training")
    resume: str = _key("", 'checkpoint to continue from, "auto" for the newest in output_dir, or a run folder '
                           '(its output_dir; its config.yaml is the recipe unless --config is given)')
    replace_run: bool = _key(False, "a new run may replace the checkpoints and records of an earlier run in "
                                    "output_dir (else it stops, saying how to continue that run)")
    allow_changed_recipe: bool = _key(False, "--resume may change keys that make the run differ from an "
                                             "uninterrupted one (model, data, batch_size, seed, lr, ...)")
    max_steps_per_epoch: int = _key(0, ">0 truncates epochs (smoke tests)")
    ckpt_path: str = _key("", "validate.py / export.py / predict.py: the weights to use")
    mindir: str = _key("", "validate.py: evaluate this exported MINDIR (or .onnx) file instead of a checkpoint")


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)

# The keys each entry point reads, so that a flag meant for another one is an error, not silently ignored. A
# --config file is a recipe that serves them all: only flags are checked.
_MODEL = {"model", "num_classes", "in_channels", "small_input", "width", "ghost_ratio"}
_DEVICE = {"device_target", "device_id"}
_EVAL_INPUT = {"dataset", "data_dir", "train_split", "image_size", "crop_pct", "interpolation", "mean", "std"}
ENTRY_POINT_KEYS = {
    "train.py": set(_FIELDS) - {"ckpt_path", "mindir"},
    "validate.py": _MODEL | _DEVICE | _EVAL_INPUT | {"val_split", "batch_size", "eval_batch_size", "num_workers",
                                                     "bad_images", "mode", "cpu_kernels", "amp_level", "output_dir",
                                                     "ckpt_path", "mindir"},
    "export.py": _MODEL | _DEVICE | {"seed", "ckpt_path"},  # --image_size, --static_batch: flags of its own
    "predict.py": _MODEL | _DEVICE | _EVAL_INPUT | {"cpu_kernels", "ckpt_path"},  # --mindir: a flag of its own
    "visualize_features.py": _MODEL | _DEVICE | _EVAL_INPUT | {"val_split", "batch_size", "eval_batch_size",
                                                               "num_workers", "bad_images", "mode", "cpu_kernels",
                                                               "output_dir", "ckpt_path"},
}
# What a user who typed a key of another entry point most likely meant.
_INSTEAD = {("train.py", "ckpt_path"): "to start from weights use --pretrained; to continue a run --resume",
            ("export.py", "batch_size"): "the exported batch is --static_batch"}


def _closest(key):
    close = difflib.get_close_matches(key, list(_FIELDS), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_type(key, value, hint):
    """Return `value` converted to `hint`, or raise ConfigError naming the key."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
    if origin in (list, List):
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects a list of {item.__name__}, got {value!r}")
        return [_check_type(key, v, item) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' expects true or false, got {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or isinstance(value, bool) and hint is not bool:
        raise ConfigError(f"config key '{key}' expects {hint.__name__}, got {value!r}")
    return value


def _apply(cfg, values, source):
    for key, value in values.items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown config key '{key}' in {source}{_closest(key)}")
        setattr(cfg, key, _check_type(key, value, _HINTS[key]))


# Keys that take one of a fixed set of names; the engine implements exactly these.
CHOICES = {
    "optimizer": ("sgd", "rmsprop", "adam", "adamw"),
    "scheduler": ("cosine", "step", "exponential", "constant"),
    "amp_level": ("O0", "O1", "O2", "O3"),
    "loss_scale": ("none", "fixed", "dynamic"),
    "mode": ("graph", "pynative"),
    "device_target": ("auto", "CPU", "GPU", "Ascend"),
    "cpu_kernels": ("auto", "off"),
    "bad_images": ("error", "skip"),
}

# (keys, rule as the error message says it, check). Every int, float and list-of-numbers key has one (tested), so a
# value that would fail late (after data loading and compilation) fails at load time instead.
RANGES = [
    (("image_size", "batch_size", "num_workers", "epochs", "ckpt_interval", "keep_checkpoints", "log_interval",
      "max_nonfinite_steps"), "at least 1", lambda v: v >= 1),
    (("num_classes", "in_channels", "eval_batch_size", "ghost_ratio"), "at least 1 (or null)",
     lambda v: v is None or v >= 1),
    (("device_id",), "at least 0 (or null)", lambda v: v is None or v >= 0),
    (("width",), "greater than 0 (or null)", lambda v: v is None or v > 0),
    (("crop_pct",), "in (0, 1] (or null)", lambda v: v is None or 0 < v <= 1),
    (("lr", "opt_eps", "decay_epochs", "loss_scale_value", "kd_temperature"), "greater than 0", lambda v: v > 0),
    (("weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "clip_grad_norm", "val_interval",
      "max_steps_per_epoch", "ckpt_interval_steps", "random_crop_padding", "color_jitter", "mixup", "cutmix"),
     "at least 0", lambda v: v >= 0),
    (("drop_rate", "momentum", "label_smoothing", "rmsprop_decay", "ema_decay"), "in [0, 1)", lambda v: 0 <= v < 1),
    (("decay_rate",), "in (0, 1]", lambda v: 0 < v <= 1),
    (("hflip", "re_prob", "mixup_prob", "kd_weight"), "in [0, 1]", lambda v: 0 <= v <= 1),
    (("seed",), "in [0, 2**31 - 1]", lambda v: 0 <= v < 2 ** 31),  # MindSpore's are uint32; epochs add to it
    (("betas",), "two values in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v)),
    (("scale",), "two values with 0 < min <= max <= 1", lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1),
    (("ratio",), "two values with 0 < min <= max", lambda v: len(v) == 2 and 0 < v[0] <= v[1]),
    (("mean",), "1 or 3 values in [0, 1] (or null)", lambda v: v is None or len(v) in (1, 3) and
     all(0 <= m <= 1 for m in v)),
    (("std",), "1 or 3 values greater than 0 (or null)", lambda v: v is None or len(v) in (1, 3) and
     all(x > 0 for x in v)),
]

# What train_split / val_split mean when left null: splits belong to the dataset, so a run that switches datasets
# on the command line (--dataset folder over the Pets recipe) gets the new dataset's splits.
DATASET_SPLITS = {
    "imagenet": ("train", "val"),
    "folder": ("train", "val"),
    "pets": ("train", "test"),
    "mnist": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "cifar10": ("train", "test"),
}


def default_splits(cfg: Config):
    """Fill train_split / val_split left null with the dataset's; an unknown dataset keeps them null (src/data
    names the dataset when it is read)."""
    if cfg.dataset in DATASET_SPLITS:
        train, val = DATASET_SPLITS[cfg.dataset]
        cfg.train_split = train if cfg.train_split is None else cfg.train_split
        cfg.val_split = val if cfg.val_split is None else cfg.val_split


def validate_config(cfg: Config):
    """Reject values that would fail late (after data loading and compilation) or silently train nonsense."""
    for key, allowed in CHOICES.items():
        value = getattr(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(allowed)}, got {value!r}"
                              f"{_closest_choice(value, allowed)}")
    for keys, rule, check in RANGES:
        for key in keys:
            value = getattr(cfg, key)
            if not check(value):
                raise ConfigError(f"config key '{key}' must be {rule}, got {value!r}")
    if cfg.min_lr > cfg.lr:
        raise ConfigError(f"config key 'min_lr' ({cfg.min_lr}) must not exceed 'lr' ({cfg.lr})")
    _validate_teacher(cfg)
    if cfg.nesterov and (cfg.optimizer != "sgd" or cfg.momentum <= 0):
        raise ConfigError(f"config key 'nesterov' needs optimizer sgd with momentum > 0, "
                          f"got optimizer {cfg.optimizer!r} with momentum {cfg.momentum}")


def _validate_teacher(cfg: Config):
    """A teacher is a model with its checkpoint, or an exported file; not both, and no half of one."""
    if cfg.teacher_mindir and (cfg.teacher_model or cfg.teacher_ckpt):
        raise ConfigError("config keys 'teacher_mindir' and 'teacher_model' / 'teacher_ckpt' both name a teacher: "
                          "set either teacher_model with teacher_ckpt, or teacher_mindir")
    if cfg.teacher_ckpt and not cfg.teacher_model:
        raise ConfigError(f"config key 'teacher_ckpt' ({cfg.teacher_ckpt}) needs 'teacher_model', the registered "
                          f"model that checkpoint is for")
    if cfg.teacher_model and not cfg.teacher_ckpt:
        raise ConfigError(f"config key 'teacher_model' ({cfg.teacher_model}) needs 'teacher_ckpt': a teacher with "
                          f"random weights has nothing to teach")
    if not (cfg.teacher_model or cfg.teacher_mindir):
        for key in ("kd_temperature", "kd_weight"):  # would be ignored: plain training where distillation was meant
            if getattr(cfg, key) != _FIELDS[key].default:
                raise ConfigError(f"config key '{key}' ({getattr(cfg, key)}) is set but no teacher is: give "
                                  f"teacher_model with teacher_ckpt, or teacher_mindir")


def _closest_choice(value, allowed):
    by_lower = {a.lower(): a for a in allowed}  # "cpu" -> "CPU", "o2" -> "O2"
    close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1, cutoff=0.5)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


def load_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> Config:
    """Defaults <- YAML file <- overrides (already parsed values), splits left null <- the dataset's, then
    `validate_config`."""
    cfg = Config()
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                values = yaml.safe_load(f) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must be a mapping of key: value")
        _apply(cfg, values, path)
    _apply(cfg, overrides or {}, "the command line")
    default_splits(cfg)
    validate_config(cfg)
    return cfg


def _foreign_key(key, entry_point) -> str:
    """The error for a key `entry_point` does not read: where it belongs, or what was meant."""
    users = [name for name, keys in ENTRY_POINT_KEYS.items() if key in keys]
    where = _INSTEAD.get((entry_point, key)) or f"it is read by {', '.join(users) or 'no entry point'}"
    return f"--{key} is not a flag of {entry_point}: {where}"


def parse_overrides(argv: List[str], entry_point: Optional[str] = None) -> dict:
    """`--key value` / `--key=value` pairs -> {key: value}; values are read as YAML scalars or lists. With an
    `entry_point` (a key of ENTRY_POINT_KEYS), a key it does not read is an error naming where it belongs."""
    overrides, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument '{arg}': overrides are written --key value")
        key, eq, text = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"override --{key} has no value")
            text, i = argv[i + 1], i + 1
        if key not in _FIELDS:
            raise ConfigError(f"unknown config key '{key}' on the command line{_closest(key)}")
        if entry_point and key not in ENTRY_POINT_KEYS[entry_point]:
            raise ConfigError(_foreign_key(key, entry_point))
        value = yaml.safe_load(text) if text.strip() else ""
        if _HINTS[key] is str or typing.get_args(_HINTS[key])[:1] == (str,):
            value = text  # keep strings verbatim ("1e-3" stays a string, "00" is not an int)
        elif "," in text and not isinstance(value, list):
            value = [yaml.safe_load(v) for v in text.split(",")]
        overrides[key] = value
        i += 1
    return overrides


def save_config(cfg: Config, path: str):
    """Write the resolved config as YAML (atomically: temporary file, then rename)."""
    write_atomic(path, lambda f: yaml.safe_dump(dataclasses.asdict(cfg), f, sort_keys=False))


def _sections():
    """[(title, note, [field, ...])] in Config's order, from the fields' metadata."""
    sections = []
    for field_ in dataclasses.fields(Config):
        if "section" in field_.metadata:
            sections.append((field_.metadata["section"], field_.metadata["note"], []))
        sections[-1][2].append(field_)
    return sections


def _type_name(hint) -> str:
    if typing.get_origin(hint) is typing.Union:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"{_type_name(inner)}|null"
    if typing.get_origin(hint) in (list, List):
        return f"{typing.get_args(hint)[0].__name__},..."
    return "true|false" if hint is bool else hint.__name__


def yaml_text(value) -> str:
    """A default as it is written in a YAML file or after --key."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return '""' if value == "" else str(value)


def config_help(entry_point: Optional[str] = None) -> str:
    """The Config keys `entry_point` reads (None: all), by section, with type, meaning, allowed range and default:
    its --help epilog."""
    rules = {key: rule for keys, rule, _ in RANGES for key in keys}
    lines = ["config keys: --key value (a list: --key a,b), or key: value in the --config YAML file, which overrides",
             "the defaults shown; flags override both."]
    for title, note, fields in _sections():
        fields = [f for f in fields if f.name in ENTRY_POINT_KEYS.get(entry_point, _FIELDS)]
        if not fields:
            continue
        lines += ["", f"{title}:"] + textwrap.wrap(note, 116, initial_indent="  ", subsequent_indent="  ")
        for field_ in fields:
            name = field_.name
            default = field_.default_factory() if field_.default is dataclasses.MISSING else field_.default
            head = f"  --{name} {_type_name(_HINTS[name])}"
            text = (field_.metadata["help"] + (f"; {rules[name]}" if name in rules else "")
                    + f" (default: {yaml_text(default)})")
            wrapped = textwrap.wrap(text, 120 - 36)
            if len(head) > 34:
                lines += [head] + [" " * 36 + part for part in wrapped]
            else:
                lines += [f"{head:<36}{wrapped[0]}"] + [" " * 36 + part for part in wrapped[1:]]
    return "\n".join(lines)


def config_from_command_line(argv, description: str, entry_point: str) -> Config:
    """`--config FILE` plus `--key value` overrides of the Config keys `entry_point` reads -> the validated Config.
    `--resume FOLDER` continues the run in that folder: its output_dir, and its config.yaml unless --config is
    given."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=config_help(entry_point))
    parser.add_argument("--config", default=None, help="YAML file with the run's settings")
    args, overrides = parser.parse_known_args(argv)
    overrides = parse_overrides(overrides, entry_point)
    folder = overrides.get("resume", "")
    if os.path.isdir(folder):
        if os.path.abspath(overrides.setdefault("output_dir", folder)) != os.path.abspath(folder):
            raise ConfigError(f"--resume {folder} is a run folder, but --output_dir names another: "
                              f"{overrides['output_dir']}")
        overrides["resume"] = "auto"
        recipe = os.path.join(folder, "config.yaml")
        if not (args.config or os.path.isfile(recipe)):
            raise ConfigError(f"--resume {folder}: the folder has no config.yaml; give the recipe with --config")
        return load_config(args.config or recipe, overrides)
    return load_config(args.config, overrides)


def prepare_output_dir(directory: str):
    """Create `directory` and prove it writable before any data is read or graph compiled; ConfigError if not."""
    probe = os.path.join(directory, ".write_test")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(probe, "w", encoding="utf-8") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as err:
        raise ConfigError(f"config key 'output_dir': cannot write to {directory}: {err.strerror or err}") from err
