"""The MindSpore context of a process: device, execution mode and global seed.

`device_target: auto` (the default) is the best device this MindSpore build and machine can use: Ascend, else GPU,
else CPU. An explicit device that is not usable here is a ConfigError naming the usable ones, raised before any
data is read or graph built (MindSpore's own refusal is a C++ trace).
"""
import functools
import logging
import warnings

import mindspore as ms

from src.config import ConfigError

PREFERENCE = ("Ascend", "GPU", "CPU")  # what `auto` picks: the first usable one


@functools.lru_cache(maxsize=None)
def usable_devices() -> tuple:
    """The devices usable here, in PREFERENCE order; asked once per process.

    `mindspore.device_context.<device>.is_available()` says whether the build's plugin for it loaded (it logs a
    warning for each that did not, silenced here: the error names the usable devices instead); an accelerator also
    needs `device_count() > 0`, since a plugin can load on a machine without the card.
    """
    found = []
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        for name in PREFERENCE:
            context = getattr(ms.device_context, name.lower())
            try:
                usable = context.is_available() and (name == "CPU" or context.device_count() > 0)
            except RuntimeError:  # device_count(): "Device_target GPU not exist." and the like
                usable = False
            if usable:
                found.append(name)
    finally:
        logging.disable(previous)
    return tuple(found)


def resolve_device(device_target: str) -> str:
    """`auto` -> the preferred usable device; an explicit one is returned if usable, else a ConfigError."""
    usable = usable_devices()
    if device_target == "auto":
        return usable[0]
    if device_target not in usable:
        raise ConfigError(f"config key 'device_target': {device_target} is not available here (this MindSpore build "
                          f"or machine cannot use it); available: {', '.join(usable)}")
    return device_target


def _select_device(device_target: str):
    """ms.set_device, tolerating a second call for the same device (MindSpore refuses any call once its runtime
    is up, which happens when train/validate/export run in one process, as in the tests)."""
    try:
        ms.set_device(device_target)
    except RuntimeError:
        if ms.get_context("device_target") != device_target:
            raise


def setup_context(cfg, training: bool = False) -> str:
    """Device, execution mode and global seed; must run before any cell is built (the seed sets the init).

    Resolves `cfg.device_target` and writes the concrete device back into cfg, so that everything after (the
    distributed start-up, export's AIR check, the saved config.yaml) sees the device that runs; returns it.
    `training`: warn about settings that only slow training down.
    """
    cfg.device_target = resolve_device(cfg.device_target)
    _select_device(cfg.device_target)
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "graph" else ms.PYNATIVE_MODE)
    ms.set_seed(cfg.seed)
    if training and cfg.device_target == "CPU" and cfg.amp_level != "O0":
        warnings.warn(f"amp_level {cfg.amp_level} on CPU: MindSpore 2.10 runs float16 kernels there, but slower than "
                      f"float32 (GhostNet training measured 2x slower); O0 is the faster choice on CPU")
    return cfg.device_target
