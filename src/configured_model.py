"""The model a config describes, built plain: sized for its data (training) or for its checkpoint, with the
checkpoint's weights (validation, export, prediction, a distillation teacher); `for_this_device` is the one place
that gives it src/kernels' CPU forms."""
from collections import namedtuple

import numpy as np
from mindspore import Tensor

from src.checkpoint import load_weights, model_weights, read_checkpoint
from src.config import ConfigError
from src.kernels import accelerate, kernels_usable
from src.models import create_model, model_info

# What model_for_data reads of a DatasetInfo.
Sizes = namedtuple("Sizes", "num_classes in_channels")


def registered_model_info(name: str, key: str = "model"):
    """`model_info(name)`, an unknown name being a ConfigError that names the config key and the closest names."""
    try:
        return model_info(name)
    except KeyError as err:
        raise ConfigError(f"config key '{key}': {err.args[0]}") from None


def model_for_data(cfg, data_info):
    """`cfg.model` sized for the data: classes and channels from the dataset unless the config fixes them."""
    registered_model_info(cfg.model)
    num_classes = cfg.num_classes or data_info.num_classes
    if num_classes != data_info.num_classes:
        raise ConfigError(f"config key 'num_classes' is {cfg.num_classes} but the {cfg.dataset} data in "
                          f"{cfg.data_dir} has {data_info.num_classes} classes")
    options = {"small_input": cfg.small_input, "drop_rate": cfg.drop_rate}
    options.update({key: getattr(cfg, key) for key in ("width", "ghost_ratio") if getattr(cfg, key) is not None})
    return create_model(cfg.model, num_classes=num_classes, in_channels=cfg.in_channels or data_info.in_channels,
                        **options)


def sizes_from_weights(name, weights, path) -> Sizes:
    """(num_classes, in_channels) from the shapes of the model's classifier and first conv weights."""
    info = registered_model_info(name)
    first = weights.get(f"{info.first_conv}.weight")
    head = [value for key, value in weights.items() if key.startswith(f"{info.classifier}.") and key.endswith("weight")]
    if first is None or not head:
        raise ConfigError(f"cannot tell num_classes / in_channels from {path} (no '{info.first_conv}.weight' or "
                          f"'{info.classifier}.*weight'): set them in the config or as --num_classes / --in_channels")
    return Sizes(head[-1].shape[0], first.shape[1])


def model_from_checkpoint(cfg, ckpt_path):
    """The config's model holding the checkpoint's weights (EMA ones when present, every key and shape matched).

    Returns (net in eval mode, kind of weights "ema" / "trained", input channels).
    """
    registered_model_info(cfg.model)
    sizes = Sizes(cfg.num_classes, cfg.in_channels)
    if None in sizes:
        weights, _ = model_weights(read_checkpoint(ckpt_path)[0], ckpt_path)
        from_weights = sizes_from_weights(cfg.model, weights, ckpt_path)
        sizes = Sizes(*(given if given is not None else read for given, read in zip(sizes, from_weights)))
    net = model_for_data(cfg, sizes)
    kind = load_weights(net, ckpt_path)
    net.set_train(False)
    return net, kind, sizes.in_channels


def for_this_device(net, cfg):
    """`net` with its cells swapped for src/kernels' fast CPU forms (`accelerate`), in place, when the device is the
    CPU, the config's `cpu_kernels` is auto and g++ builds the kernels; otherwise `net` unchanged.

    The parameters stay the same objects, names and values: call it before building the optimizer or EMA. Never
    before exporting: a MINDIR / ONNX file must hold MindSpore's own ops only.
    """
    if cfg.cpu_kernels == "off" or not kernels_usable():
        return net
    in_channels = dict(net.cells_and_names())[registered_model_info(cfg.model).first_conv].in_channels
    return accelerate(net, Tensor(np.zeros((1, in_channels, cfg.image_size, cfg.image_size), np.float32)))
