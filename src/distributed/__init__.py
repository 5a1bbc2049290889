"""Multi-device start-up: `init_distributed(device_target)` works under mpirun, msrun or a plain single process.

- Plain `python train.py`: nothing to initialise, world size 1.
- `msrun` (or a hand-made dynamic cluster): MS_ROLE is already set, MindSpore's `init()` does the rest; on one
  node or several (msrun on every node with `--node_rank` and the first node's `--master_addr`).
- `mpirun -n N` on GPU / Ascend: MindSpore's own OpenMPI support, `init()` alone.
- `mpirun -n N` on CPU: MindSpore's CPU collectives need its dynamic cluster (a scheduler plus N workers sharing
  MS_SCHED_HOST/PORT), which a bare mpirun does not create; `mpi_bootstrap` builds it from the MPI environment,
  on one host or across a --hostfile's hosts.
Before `init()` a worker checks that it can reach the scheduler (`reach.py`): an unreachable address is one line
naming it within MS_TOPO_TIMEOUT seconds, not a hang.
"""
import json
import os
import sys
from dataclasses import dataclass

import numpy as np


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
    elif os.environ.get("MS_ROLE") == "MS_WORKER" and "MS_SCHED_HOST" in os.environ:
        from src.distributed.reach import wait_for_scheduler

        try:
            wait_for_scheduler(os.environ["MS_SCHED_HOST"], int(os.environ.get("MS_SCHED_PORT", "8118")))
        except RuntimeError as err:
            raise SystemExit(f"rank {os.environ.get('RANK_ID', os.environ.get('MS_NODE_ID', '?'))}: {err}") from None
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    ms.set_context(device_target=device_target)
    init()
    info = DistInfo(rank=get_rank(), world_size=get_group_size())
    _end_the_job_on_error(info, under_mpirun)
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=info.world_size)
    return info


def _end_the_job_on_error(info: DistInfo, under_mpirun: bool):
    """An uncaught exception on one rank ends the whole job at once, naming the rank.

    Otherwise the failing rank's interpreter exit waits on its peers, which wait in the next collective, until
    MindSpore's node heartbeat times out (about 30 s on CPU) and the survivors kill themselves. Under mpirun the
    hook aborts MPI_COMM_WORLD (mpirun then stops every rank); under msrun it exits at once and the others stop
    at the heartbeat timeout. A rank killed by a signal is handled by mpirun / msrun themselves. When a rank or
    its host is lost, the others' all-reduce fails after about 30 s and raises here; MindSpore's scheduler names
    the node that timed out.
    """
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        message = _first_line(str(value))
        sys.stderr.write(f"rank {info.rank} of {info.world_size} failed ({kind.__name__}: {message}); "
                         f"ending the job\n")
        sys.stderr.flush()
        if under_mpirun and "mpi4py.MPI" in sys.modules:
            sys.modules["mpi4py.MPI"].COMM_WORLD.Abort(1)
        os._exit(1)

    sys.excepthook = hook


def _first_line(message: str) -> str:
    """The first line of an error message that says something (MindSpore's start with banners of dashes)."""
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith("-"):
            return line
    return ""


def _all_gather_int32(values: np.ndarray) -> np.ndarray:
    """(world size, n) int32: every rank's n-element int32 vector, in rank order, on every rank (a collective).

    int32 through AllGather is a type that every backend's collectives carry; other data travels as its bytes."""
    import mindspore as ms
    import mindspore.ops as ops
    from mindspore.communication import get_group_size

    values = np.ascontiguousarray(values, dtype=np.int32).ravel()
    return ops.AllGather()(ms.Tensor(values)).asnumpy().reshape(get_group_size(), values.size)


def sum_across_ranks(values) -> np.ndarray:
    """Element-wise float64 sum of a vector over all ranks of the job, bit-identical on every rank.

    Every rank must call it (a collective). The float64 bytes travel as int32 (AllReduce on CPU takes float32
    only: too coarse for counts and loss sums), and each rank sums the gathered vectors in rank order.
    """
    values = np.ascontiguousarray(values, dtype=np.float64).ravel()
    return np.ascontiguousarray(_all_gather_int32(values.view(np.int32))).view(np.float64).sum(axis=0)


def gather_json(value) -> list:
    """Every rank's JSON-serialisable `value`, in rank order, on every rank (a collective: lengths, then bytes)."""
    data = json.dumps(value, sort_keys=True).encode("utf-8")
    lengths = _all_gather_int32(np.array([len(data)]))[:, 0]
    padded = np.zeros(-(-int(lengths.max()) // 4) * 4, dtype=np.uint8)
    padded[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    gathered = np.ascontiguousarray(_all_gather_int32(padded.view(np.int32))).view(np.uint8)
    return [json.loads(row[:n].tobytes().decode("utf-8")) for row, n in zip(gathered, lengths)]
