"""Two-stage configuration: a YAML file gives defaults, `--key value` flags override them.

The schema is the `Config` dataclass below: one flat namespace (so every key can be overridden as `--key`),
grouped by the subsystem that reads it. Values are type-checked, unknown keys are an error naming the closest
valid key, and the resolved config is written next to the checkpoints.
"""
import argparse
import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from typing import List, Optional

import yaml

from src.utils.files import write_atomic


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and the problem."""


@dataclass
class Config:
    # --- model -------------------------------------------------------------------------------------
    model: str = "ghostnet_100"
    num_classes: Optional[int] = None  # None: taken from the dataset
    in_channels: Optional[int] = None  # None: taken from the dataset (1 for MNIST-like data)
    small_input: bool = False  # stride-1 stem and one fewer downsampling, for 28-32 px images
    drop_rate: float = 0.2
    width: Optional[float] = None  # width multiplier override for families that take one
    ghost_ratio: Optional[int] = None  # Ghost module ratio s override (ghost_vgg16, ghost_resnet*)
    pretrained: str = ""  # checkpoint to fine-tune from; a head of another size is dropped and re-initialised

    # --- data --------------------------------------------------------------------------------------
    dataset: str = "fashion_mnist"  # imagenet | folder | mnist | fashion_mnist | cifar10 | pets
    data_dir: str = "/usr/share/datasets/fashion-mnist"
    train_split: str = "train"
    val_split: str = "val"
    image_size: int = 224
    batch_size: int = 128  # per device
    eval_batch_size: Optional[int] = None  # None: same as batch_size
    num_workers: int = 2
    crop_pct: Optional[float] = None  # eval resize = image_size / crop_pct; None: the model's default
    interpolation: str = "bilinear"
    mean: Optional[List[float]] = None  # None: the dataset's own statistics
    std: Optional[List[float]] = None
    scale: List[float] = field(default_factory=lambda: [0.08, 1.0])  # random resized crop area range
    ratio: List[float] = field(default_factory=lambda: [3.0 / 4.0, 4.0 / 3.0])
    random_crop_padding: int = 0  # >0: pad-and-crop (CIFAR style) instead of random resized crop
    hflip: float = 0.5
    color_jitter: float = 0.0
    auto_augment: str = ""  # e.g. "rand-m9-mstd0.5" for RandAugment magnitude 9
    re_prob: float = 0.0  # random erasing probability
    mixup: float = 0.0  # mixup alpha; 0 disables
    cutmix: float = 0.0  # cutmix alpha; 0 disables
    mixup_prob: float = 1.0
    bad_images: str = "error"  # error | skip: what to do with an unreadable image

    # --- optimisation ------------------------------------------------------------------------------
    epochs: int = 10
    optimizer: str = "sgd"  # sgd | rmsprop | adam | adamw
    lr: float = 0.1  # for the global batch (per-device batch x devices); see configs/README.md
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 4e-5
    filter_bias_and_bn: bool = True  # no weight decay on BN parameters and biases
    opt_eps: float = 1e-8
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam / adamw
    rmsprop_decay: float = 0.9  # rmsprop: moving-average factor of the squared gradients (PyTorch's alpha)
    scheduler: str = "cosine"  # cosine | step | exponential | constant
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    min_lr: float = 1e-6
    decay_epochs: float = 30.0  # step / exponential: decay every this many epochs
    decay_rate: float = 0.1
    label_smoothing: float = 0.1
    ema: bool = False  # keep an exponential moving average of the weights; validate and keep best on it
    ema_decay: float = 0.9999  # upper bound; early on the decay is (1 + n) / (10 + n) after n updates
    clip_grad_norm: float = 0.0  # 0 disables
    amp_level: str = "O0"  # O0 | O1 | O2 | O3
    loss_scale: str = "none"  # none | fixed | dynamic
    loss_scale_value: float = 1024.0
    seed: int = 42

    # --- knowledge distillation (train.py; src/engine/distill.py) -------------------------------------
    # The teacher scores the student's training batches in inference mode; it must predict the same classes.
    teacher_model: str = ""  # registered model name of the teacher (with teacher_ckpt); small_input as the student's
    teacher_ckpt: str = ""  # the teacher's weights (every key and shape must fit teacher_model)
    teacher_mindir: str = ""  # or: an exported teacher (.mindir, or .onnx with onnxruntime) instead of the two above
    kd_temperature: float = 1.0  # T: both softmaxes are taken of logits / T
    kd_weight: float = 0.5  # alpha: loss = (1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher || student)

    # --- run ---------------------------------------------------------------------------------------
    mode: str = "graph"  # graph | pynative
    device_target: str = "CPU"  # CPU | GPU | Ascend
    cpu_kernels: str = "auto"  # auto | off: on CPU, swap in src/kernels' fast cells (auto: when g++ builds them)
    output_dir: str = "outputs/run"
    ckpt_interval: int = 1  # save the latest checkpoint every this many epochs
    ckpt_interval_steps: int = 0  # >0: also save a resumable mid-epoch checkpoint every this many steps
    max_nonfinite_steps: int = 5  # stop after this many steps in a row with a non-finite loss or gradients (loss-
    # scale overflows included: only a streak stops the run); such steps change no weight
    keep_checkpoints: int = 3
    log_interval: int = 50  # steps between progress lines
    val_interval: int = 1  # epochs between validations; 0 disables validation during training
    resume: str = ""  # checkpoint to continue from, or "auto" for the newest in output_dir
    max_steps_per_epoch: int = 0  # >0 truncates epochs (smoke tests)
    ckpt_path: str = ""  # validate.py: the weights to evaluate
    mindir: str = ""  # validate.py: evaluate this exported MINDIR (or .onnx) file instead of a checkpoint


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)


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
    "device_target": ("CPU", "GPU", "Ascend"),
    "cpu_kernels": ("auto", "off"),
    "bad_images": ("error", "skip"),
}

# (keys, rule as the error message says it, check)
_RANGES = [
    (("batch_size", "epochs", "ckpt_interval", "keep_checkpoints", "log_interval", "max_nonfinite_steps"),
     "at least 1", lambda v: v >= 1),
    (("eval_batch_size",), "at least 1 (or null)", lambda v: v is None or v >= 1),
    (("lr", "opt_eps", "decay_epochs", "loss_scale_value", "kd_temperature"), "greater than 0", lambda v: v > 0),
    (("weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "clip_grad_norm", "val_interval",
      "max_steps_per_epoch", "ckpt_interval_steps"), "at least 0", lambda v: v >= 0),
    (("momentum", "label_smoothing", "rmsprop_decay", "ema_decay"), "in [0, 1)", lambda v: 0 <= v < 1),
    (("decay_rate",), "in (0, 1]", lambda v: 0 < v <= 1),
    (("kd_weight",), "in [0, 1]", lambda v: 0 <= v <= 1),
    (("betas",), "two values in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v)),
]


def validate_config(cfg: Config):
    """Reject values that would fail late (after data loading and compilation) or silently train nonsense."""
    for key, allowed in CHOICES.items():
        value = getattr(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(allowed)}, got {value!r}"
                              f"{_closest_choice(value, allowed)}")
    for keys, rule, check in _RANGES:
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
    """Defaults <- YAML file <- overrides (already parsed values), then `validate_config`."""
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
    validate_config(cfg)
    return cfg


def parse_overrides(argv: List[str]) -> dict:
    """`--key value` / `--key=value` pairs -> {key: value}; values are read as YAML scalars or lists."""
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


def config_from_command_line(argv, description: str) -> Config:
    """`--config FILE` plus `--key value` overrides of any Config key -> the validated Config."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Any key of src/config.py's Config can be given as --key value.")
    parser.add_argument("--config", default=None, help="YAML file with the run's settings")
    args, overrides = parser.parse_known_args(argv)
    return load_config(args.config, parse_overrides(overrides))


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
