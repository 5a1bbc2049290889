"""Two-stage configuration: a YAML file gives defaults, `--key value` flags override them.

The schema is the `Config` dataclass below: one flat namespace (so every key can be overridden as `--key`),
grouped by the subsystem that reads it. Values are type-checked, unknown keys are an error naming the closest
valid key, and the resolved config is written next to the checkpoints.
"""
import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from typing import List, Optional

import yaml


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
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "cosine"  # cosine | step | exponential | constant
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    min_lr: float = 1e-6
    decay_epochs: float = 30.0  # step / exponential: decay every this many epochs
    decay_rate: float = 0.1
    label_smoothing: float = 0.1
    ema: bool = False
    ema_decay: float = 0.9999
    clip_grad_norm: float = 0.0  # 0 disables
    amp_level: str = "O0"  # O0 | O1 | O2 | O3
    loss_scale: str = "none"  # none | fixed | dynamic
    loss_scale_value: float = 1024.0
    seed: int = 42

    # --- run ---------------------------------------------------------------------------------------
    mode: str = "graph"  # graph | pynative
    device_target: str = "CPU"  # CPU | GPU | Ascend
    output_dir: str = "outputs/run"
    ckpt_interval: int = 1  # save the latest checkpoint every this many epochs
    keep_checkpoints: int = 3
    log_interval: int = 50  # steps between progress lines
    val_interval: int = 1  # epochs between validations; 0 disables validation during training
    resume: str = ""  # checkpoint to continue from, or "auto" for the newest in output_dir
    max_steps_per_epoch: int = 0  # >0 truncates epochs (smoke tests)


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


def load_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> Config:
    """Defaults <- YAML file <- overrides (already parsed values)."""
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
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(dataclasses.asdict(cfg), f, sort_keys=False)
    os.replace(tmp, path)
