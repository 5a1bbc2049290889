"""The MindSpore context of a process: device, execution mode and global seed.

`device_target: auto` (the default) is the best device this MindSpore build and machine can use: Ascend, else GPU,
else CPU. An explicit device that is not usable here is a ConfigError naming the usable ones, raised before any
data is read or graph built (MindSpore's own refusal is a C++ trace).

On a host with several accelerators each process takes the device of its local rank, read from the launcher's
environment (`choose_device_id`), and a share of the host's CPUs for its data workers (`workers_per_rank`).
"""
import functools
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Optional

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


def local_ranks(environ) -> tuple:
    """(this process's rank on its host, processes on its host) from the launcher's environment.

    mpirun exports both (OMPI_COMM_WORLD_LOCAL_RANK / _LOCAL_SIZE). msrun exports DEVICE_ID = the worker's local
    rank and MS_WORKER_NUM = the whole job's workers, not its --local_worker_num: that count is exact on one host
    and too high on several (fewer data workers than the host could give). A plain process is (0, 1).
    """
    if "OMPI_COMM_WORLD_LOCAL_RANK" in environ:
        return int(environ["OMPI_COMM_WORLD_LOCAL_RANK"]), int(environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1"))
    if "MS_ROLE" in environ:
        return int(environ.get("DEVICE_ID", "0")), int(environ.get("MS_WORKER_NUM", "1"))
    return 0, 1


def choose_device_id(environ, cfg, device_count: int) -> Optional[int]:
    """The accelerator this process runs on: `cfg.device_id` when set, else mpirun's local rank, else msrun's
    (its DEVICE_ID; without one, None leaves the id to MindSpore's negotiation under msrun), else 0.

    None on CPU, where MindSpore has one device and ignores the id. An id outside the host's `device_count`
    devices is a ConfigError naming where it came from.
    """
    if cfg.device_target == "CPU":
        return None
    if cfg.device_id is not None:
        device_id, source = cfg.device_id, "config key 'device_id'"
    elif "OMPI_COMM_WORLD_LOCAL_RANK" in environ:
        device_id, source = int(environ["OMPI_COMM_WORLD_LOCAL_RANK"]), "mpirun's local rank"
    elif "MS_ROLE" in environ:
        if "DEVICE_ID" not in environ:
            return None
        device_id, source = int(environ["DEVICE_ID"]), "msrun's DEVICE_ID"
    else:
        device_id, source = 0, "a single process"
    if device_id >= device_count:
        raise ConfigError(f"device id {device_id} ({source}) is outside the {device_count} {cfg.device_target} "
                          f"device(s) of this host (ids 0..{device_count - 1}): start at most {device_count} "
                          f"processes per host, or set --device_id")
    return device_id


def workers_per_rank(num_workers: int, local_size: int, cpu_count: int) -> int:
    """Data workers of each pipeline stage: `num_workers`, capped by this host's CPUs shared among its ranks."""
    return max(1, min(num_workers, cpu_count // local_size))


@dataclass(frozen=True)
class Placement:
    """What this process got on its host: its device (and id) and data workers; `line` is its start-up line."""

    device: str
    device_id: Optional[int]  # None: CPU (the id is not used), or left to msrun's negotiation
    local_rank: int
    local_size: int
    workers: int
    cpu_count: int

    def line(self, rank: int, world_size: int) -> str:
        if self.device == "CPU":
            where = "CPU (no device id on CPU)"
        elif self.device_id is None:
            where = f"{self.device}, device id chosen by msrun's negotiation"
        else:
            where = f"{self.device} device {self.device_id}"
        return (f"rank {rank} of {world_size} (local {self.local_rank} of {self.local_size} on this host): "
                f"{where}, {self.workers} data worker(s) per stage ({self.cpu_count} CPUs / {self.local_size} "
                f"local rank(s))")


def placement(cfg, environ=None) -> Placement:
    """This process's Placement under `cfg` (device_target already resolved) and the launcher's `environ`."""
    environ = os.environ if environ is None else environ
    local_rank, local_size = local_ranks(environ)
    cpu_count = os.cpu_count() or 1
    count = 1 if cfg.device_target == "CPU" else getattr(ms.device_context, cfg.device_target.lower()).device_count()
    return Placement(cfg.device_target, choose_device_id(environ, cfg, count), local_rank, local_size,
                     workers_per_rank(cfg.num_workers, local_size, cpu_count), cpu_count)


def _select_device(device_target: str, device_id: Optional[int]):
    """ms.set_device, tolerating a second call for the same device (MindSpore refuses any call once its runtime
    is up, which happens when train/validate/export run in one process, as in the tests)."""
    try:
        ms.set_device(device_target, *(() if device_id is None else (device_id,)))
    except RuntimeError:
        if ms.get_context("device_target") != device_target:
            raise


def setup_context(cfg, training: bool = False) -> str:
    """Device, execution mode and global seed; must run before any cell is built (the seed sets the init).

    Resolves `cfg.device_target` and writes the concrete device back into cfg, so that everything after (the
    distributed start-up, export's AIR check, the saved config.yaml) sees the device that runs; returns it.
    The device id is this process's (`placement`); `cfg.num_workers` becomes its share of the host's CPUs.
    `training`: warn about settings that only slow training down.
    """
    cfg.device_target = resolve_device(cfg.device_target)
    here = placement(cfg)
    cfg.num_workers = here.workers
    _select_device(cfg.device_target, here.device_id)
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "graph" else ms.PYNATIVE_MODE)
    ms.set_seed(cfg.seed)
    if training and cfg.device_target == "CPU" and cfg.amp_level != "O0":
        warnings.warn(f"amp_level {cfg.amp_level} on CPU: MindSpore 2.10 runs float16 kernels there, but slower than "
                      f"float32 (GhostNet training measured 2x slower); O0 is the faster choice on CPU")
    return cfg.device_target
