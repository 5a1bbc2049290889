"""The MindSpore context of a process: execution mode, device and global seed."""
import warnings

import mindspore as ms


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
