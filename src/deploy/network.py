"""Rebuild a trained network from its config and checkpoint alone, in eval mode (export.py, scripts/predict.py).

Training sizes the model from the dataset (`src.engine.build.build_model`); exporting or predicting should not need
the dataset for that, so num_classes / in_channels left null in the config are read off the checkpoint instead.
"""
from collections import namedtuple

from src.config import ConfigError
from src.engine.build import build_model
from src.engine.checkpoint import load_weights, model_weights, read_checkpoint
from src.models import model_info

# What build_model reads of a DatasetInfo.
Sizes = namedtuple("Sizes", "num_classes in_channels")


def _sizes_from_weights(name, weights, path):
    """(num_classes, in_channels) from the shapes of the model's classifier and first conv weights."""
    info = model_info(name)
    first = weights.get(f"{info.first_conv}.weight")
    head = [value for key, value in weights.items() if key.startswith(f"{info.classifier}.") and key.endswith("weight")]
    if first is None or not head:
        raise ConfigError(f"cannot tell num_classes / in_channels from {path} (no '{info.first_conv}.weight' or "
                          f"'{info.classifier}.*weight'): set them in the config or as --num_classes / --in_channels")
    return Sizes(head[-1].shape[0], first.shape[1])


def build_network(cfg, ckpt_path):
    """The config's model holding the checkpoint's weights (EMA ones when present, every key and shape matched).

    Returns (net in eval mode, kind of weights "ema" / "trained", input channels).
    """
    try:
        model_info(cfg.model)
    except KeyError as err:
        raise ConfigError(err.args[0]) from err
    sizes = Sizes(cfg.num_classes, cfg.in_channels)
    if None in sizes:
        from_weights = _sizes_from_weights(cfg.model, model_weights(read_checkpoint(ckpt_path)[0])[0], ckpt_path)
        sizes = Sizes(*(given if given is not None else read for given, read in zip(sizes, from_weights)))
    net = build_model(cfg, sizes)
    kind = load_weights(net, ckpt_path)
    net.set_train(False)
    return net, kind, sizes.in_channels
