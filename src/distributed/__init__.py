"""Multi-device start-up: `init_distributed(device_target)` works under mpirun, msrun or a plain single process.

- Plain `python train.py`: nothing to initialise, world size 1.
- `msrun` (or a hand-made dynamic cluster): MS_ROLE is already set, MindSpore's `init()` does the rest.
- `mpirun -n N` on GPU / Ascend: MindSpore's own OpenMPI support, `init()` alone.
- `mpirun -n N` on CPU: MindSpore's CPU collectives need its dynamic cluster (a scheduler plus N workers sharing
  MS_SCHED_HOST/PORT), which a bare mpirun does not create; `mpi_bootstrap` builds it from the MPI environment.
"""
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main rank prints progress and writes files."""
        return self.rank == 0


def mpi_world_size() -> int:
    """Number of processes mpirun started (1 when not under mpirun)."""
    return int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("PMI_SIZE", "1")))


def init_distributed(device_target: str) -> DistInfo:
    """Join the process group this process was launched into; must run before any MindSpore graph is built."""
    launched_by_msrun = "MS_ROLE" in os.environ
    under_mpirun = mpi_world_size() > 1
    if not (launched_by_msrun or under_mpirun):
        return DistInfo()
    if under_mpirun and not launched_by_msrun and device_target == "CPU":
        from src.distributed.mpi_bootstrap import bootstrap_cpu_cluster

        bootstrap_cpu_cluster()
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    ms.set_context(device_target=device_target)
    init()
    info = DistInfo(rank=get_rank(), world_size=get_group_size())
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=info.world_size)
    return info
