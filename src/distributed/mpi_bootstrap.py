"""Turn an `mpirun -n N` launch into MindSpore's CPU dynamic cluster.

MindSpore's CPU collectives need a scheduler process (MS_ROLE=MS_SCHED) and N workers that all know the
scheduler's address. Under a bare mpirun nobody starts the scheduler, and `init()` fails with "some processes in
the cluster are not successfully spawned". Here rank 0 picks a free port, starts the scheduler as a child
process, and shares the address with the other ranks through MPI; every rank then becomes a worker whose
MindSpore rank equals its MPI rank.

The scheduler's address is MS_SCHED_HOST when set; else loopback when every rank is on rank 0's host; else the
address of rank 0's interface that routes to another host's rank (each rank's IPv4 addresses are gathered through
MPI), never what this host's name resolves to, which is a loopback address on Debian and Ubuntu.
"""
import ctypes
import fcntl
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import time

from src.distributed.reach import DEFAULT_TIMEOUT_S, wait_for_scheduler

_SCHEDULER_CODE = (
    "import mindspore as ms\n"
    "from mindspore.communication import init\n"
    "ms.set_context(device_target='CPU')\n"
    "init()\n"
)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def local_ipv4_addresses() -> list:
    """This host's IPv4 interface addresses, loopback excluded, in interface order."""
    siocgifaddr = 0x8915
    addresses = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                request = struct.pack("256s", name.encode()[:15])
                address = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), siocgifaddr, request)[20:24])
            except OSError:  # an interface without an IPv4 address
                continue
            if not ipaddress.ip_address(address).is_loopback and address not in addresses:
                addresses.append(address)
    return addresses


def route_address(own: list, others: list) -> str | None:
    """The local address the kernel would send from to the first of `others` (another host's addresses) that
    is not one of this host's `own` and has a route; None when none has."""
    for peer in others:
        if peer in own:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((peer, 9))  # UDP: picks the route and source address, sends nothing
            except OSError:
                continue
            return sock.getsockname()[0]
    return None


def _scheduler_host(comm) -> str | None:
    """Run on every rank (a collective); rank 0 gets the scheduler's host, or None when no address routes to the
    other hosts."""
    if "MS_SCHED_HOST" in os.environ:
        return os.environ["MS_SCHED_HOST"]
    local = os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    if local is not None and local == os.environ.get("OMPI_COMM_WORLD_SIZE"):
        return "127.0.0.1"
    gathered = comm.gather(local_ipv4_addresses(), root=0)
    if comm.Get_rank() != 0:
        return None
    own = gathered[0]
    return route_address(own, [address for addresses in gathered[1:] for address in addresses])


def _die_with_parent():
    """Runs in the scheduler child: SIGTERM it when rank 0 dies, so no orphan scheduler outlives the job."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_scheduler(env: dict) -> subprocess.Popen:
    """The scheduler exits by itself once every worker has unregistered, which MindSpore does after Python's
    atexit handlers: rank 0 must not wait for it at exit (that stalled every run by 30 s and made rank 0's own
    unregistration fail). If rank 0 dies first, the parent-death signal ends the scheduler."""
    sched_env = {k: v for k, v in env.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    sched_env["MS_ROLE"] = "MS_SCHED"
    return subprocess.Popen([sys.executable, "-c", _SCHEDULER_CODE], env=sched_env, preexec_fn=_die_with_parent)


def _wait_until_listening(proc: subprocess.Popen, host: str, port: int, timeout_s: float = 300.0):
    """Return once the scheduler accepts connections. A worker whose first registration attempts found no
    scheduler yet can keep failing to register for minutes (seen with MindSpore 2.10 on CPU), so workers
    start only after this."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"MindSpore's scheduler process exited with code {proc.returncode} before the "
                               f"workers could join it")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"MindSpore's scheduler is not listening on {host}:{port} after "
                                   f"{timeout_s:.0f} s") from None
            time.sleep(0.2)


def _abort(comm, message: str):
    """One line on stderr, then end every rank of the job."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    comm.Abort(1)


def _quiet_barrier(comm):
    """MPI barrier that sleeps instead of spinning, leaving the cores to the scheduler start-up."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.05)


def bootstrap_cpu_cluster():
    """Set MS_ROLE/MS_WORKER_NUM/MS_SCHED_HOST/MS_SCHED_PORT/MS_NODE_ID for this rank; rank 0 starts the scheduler."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise RuntimeError("mpirun on CPU needs mpi4py to set up MindSpore's cluster: pip install mpi4py") from err
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    host = _scheduler_host(comm)
    address = None
    if rank == 0:
        if host is None:
            _abort(comm, "rank 0 found no address of its host that routes to the other hosts' ranks; "
                         "set MS_SCHED_HOST to an address of rank 0's host that every rank can reach")
        try:
            address = (host, _free_port(host))
        except OSError as err:
            _abort(comm, f"rank 0 cannot open a port for MindSpore's scheduler on {host} ({err.strerror}): "
                         f"MS_SCHED_HOST must be an address of rank 0's host")
    host, port = comm.bcast(address, root=0)
    os.environ.update(MS_WORKER_NUM=str(size), MS_SCHED_HOST=host, MS_SCHED_PORT=str(port))
    os.environ.setdefault("MS_TOPO_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    if rank == 0:
        try:
            _wait_until_listening(_start_scheduler(dict(os.environ)), host, port)
        except RuntimeError as err:  # the other ranks wait in the barrier: end them too
            _abort(comm, f"rank 0: {err}")
    _quiet_barrier(comm)
    try:
        wait_for_scheduler(host, port)
    except RuntimeError as err:
        _abort(comm, f"rank {rank}: {err}")
    os.environ.update(MS_ROLE="MS_WORKER", MS_NODE_ID=str(rank))
