"""From the command line to the objects train.py and validate.py need: config, MindSpore context, model."""
import argparse
import os
import warnings

import mindspore as ms

from src.config import ConfigError, load_config, parse_overrides
from src.models import create_model, model_info


def config_from_command_line(argv, description: str):
    """`--config FILE` plus `--key value` overrides of any Config key -> the validated Config."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Any key of src/config.py's Config can be given as --key value.")
    parser.add_argument("--config", default=None, help="YAML file with the run's settings")
    args, overrides = parser.parse_known_args(argv)
    return load_config(args.config, parse_overrides(overrides))


def _select_device(device_target: str):
    """ms.set_device, tolerating a second call for the same device (MindSpore refuses any call once its runtime
    is up, which happens when train/validate/export run in one process, as in the tests)."""
    try:
        ms.set_device(device_target)
    except RuntimeError:
        if ms.get_context("device_target") != device_target:
            raise


def setup_context(cfg):
    """Execution mode, device and global seed; must run before any cell is built (the seed sets the init)."""
    _select_device(cfg.device_target)
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "graph" else ms.PYNATIVE_MODE)
    ms.set_seed(cfg.seed)
    if cfg.device_target == "CPU" and cfg.amp_level != "O0":
        warnings.warn(f"amp_level {cfg.amp_level} on CPU: MindSpore 2.10 runs float16 kernels there, but slower than "
                      f"float32 (GhostNet training measured 2x slower); O0 is the faster choice on CPU")


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


def build_model(cfg, data_info):
    """`cfg.model` sized for the data: classes and channels from the dataset unless the config fixes them."""
    num_classes = cfg.num_classes or data_info.num_classes
    if num_classes != data_info.num_classes:
        raise ConfigError(f"config key 'num_classes' is {cfg.num_classes} but the {cfg.dataset} data in "
                          f"{cfg.data_dir} has {data_info.num_classes} classes")
    options = {"small_input": cfg.small_input, "drop_rate": cfg.drop_rate}
    options.update({key: getattr(cfg, key) for key in ("width", "ghost_ratio") if getattr(cfg, key) is not None})
    try:
        model_info(cfg.model)
    except KeyError as err:  # an unknown name; the message lists the closest registered ones
        raise ConfigError(f"config key 'model': {err.args[0]}") from None
    return create_model(cfg.model, num_classes=num_classes, in_channels=cfg.in_channels or data_info.in_channels,
                        **options)

