"""Simulated hosts on this machine, for multi-host tests and benchmarks: N Linux network namespaces on a private
bridge, so that the real launchers (msrun on every node, mpirun --hostfile) run across them. Needs root.

    with LocalCluster(hosts=2) as cluster:
        cluster.hosts[k].name / .address / .veth     # namespace gn<id>h<k>, 198.18.<id>.<k+1>, its eth0
        cluster.popen(k, argv, env=..., **popen_kw)  # argv in namespace gn<id>h<k>, host name gn<id>h<k>
        cluster.limit_rate("1gbit")                  # tbf on each host's link, both directions; None removes it
        cluster.link_down(k) / cluster.link_up(k)    # pull / plug host k's cable (its bridge port)
        cluster.hostfile(slots)                      # path of an OpenMPI hostfile, `slots` ranks per host
        cluster.rsh_agent                            # path of the `--mca plm_rsh_agent` script
        cluster.mpirun_command(slots, argv)          # mpirun --hostfile ... argv, to run with popen(0, ...)

The bridge lives in its own namespace gn<id>br and nothing is added to the root namespace, so traffic goes only
between the cluster's hosts. A cluster id (0-255, the third octet) belongs to the process that holds the flock of
its lock file for the cluster's whole life, from before its first namespace exists: clusters of several processes
coexist, and a cluster is a leftover exactly when nobody holds its lock (its maker died), never while it is being
made. Leaving the `with` block (normally, by an exception, or by
SIGINT / SIGTERM, which become KeyboardInterrupt / SystemExit inside it) kills every process in the namespaces
and deletes them. Leftovers of a crashed run: `python3 scripts/local_cluster.py cleanup`.

    python3 scripts/local_cluster.py up --hosts 2 [--rate 1gbit]   # make one, print it, remove it on Ctrl-C
    python3 scripts/local_cluster.py list | cleanup [--id N] [--force]
"""
import argparse
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

PREFIX = "gn"
_NAMESPACE = re.compile(rf"^{PREFIX}(\d+)(?:h\d+|br)$")
_STATE_DIRS = os.path.join(tempfile.gettempdir(), f"local-cluster-{PREFIX}")  # + "<id>": agent, hostfile
# + "<id>.lock": held (flock) by the cluster's maker, which writes its pid in it


@dataclass(frozen=True)
class Host:
    name: str  # its network namespace
    address: str  # its IPv4 address on the cluster's /24
    veth: str  # its interface inside the namespace
    port: str  # the other end of its veth pair, on the bridge


def _ip(*args, namespace=None, check=True) -> subprocess.CompletedProcess:
    command = (["ip", "netns", "exec", namespace] if namespace else []) + ["ip", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result


def _tc(namespace, *args):
    result = subprocess.run(["ip", "netns", "exec", namespace, "tc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`tc {' '.join(args)}` in {namespace} failed: {result.stderr.strip()}")


def unavailable_reason() -> str | None:
    """Why this machine cannot make a cluster (not root, no `ip netns`), or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (`ip`, `tc`) is not installed"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _rate_bits(rate: str) -> float:
    """'10gbit' / '100mbit' / '1.5gbit' (tc's units) as bits per second."""
    match = re.fullmatch(r"([0-9.]+)\s*([kmg]?)bit", rate.strip().lower())
    if match is None:
        raise ValueError(f"rate {rate!r} is not a tc rate like '1gbit', '100mbit' or '500kbit'")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]


class LocalCluster:
    """N hosts as network namespaces on one bridge; a context manager that always removes what it made."""

    def __init__(self, hosts: int = 2):
        if hosts < 1 or hosts > 250:
            raise ValueError(f"a local cluster has 1 to 250 hosts, not {hosts}")
        self.size = hosts
        self.cluster_id = None
        self.hosts: list[Host] = []
        self.state_dir = None
        self._lock_fd = None
        self._previous_handlers = {}

    # -- life cycle -------------------------------------------------------------------------------------------
    def __enter__(self):
        self._catch_signals()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _catch_signals(self):
        """SIGTERM ends the `with` block as SystemExit (SIGINT already does, as KeyboardInterrupt), so it cleans up."""
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            try:
                self._previous_handlers[signal.SIGTERM] = signal.signal(
                    signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
            except ValueError:  # not the main thread: the caller cleans up
                pass

    def _reserve_id(self) -> int:
        """The first id whose lock this process takes and whose bridge namespace it then adds; the lock is kept."""
        start = os.getpid() % 256
        for offset in range(256):
            cluster_id = (start + offset) % 256
            lock_fd = _try_lock(cluster_id)
            if lock_fd is None:
                continue
            if cluster_id in cluster_namespaces():  # a dead maker's leftover: nobody held its lock
                _remove_namespaces(cluster_id)
            os.ftruncate(lock_fd, 0)
            os.write(lock_fd, str(os.getpid()).encode())
            if subprocess.run(["ip", "netns", "add", f"{PREFIX}{cluster_id}br"], capture_output=True).returncode == 0:
                self._lock_fd = lock_fd
                return cluster_id
            os.close(lock_fd)
        raise RuntimeError("no free local cluster id: `python3 scripts/local_cluster.py cleanup` removes leftovers")

    def _create(self):
        self.cluster_id = self._reserve_id()
        self.state_dir = f"{_STATE_DIRS}{self.cluster_id}"
        shutil.rmtree(self.state_dir, ignore_errors=True)
        os.makedirs(self.state_dir)
        bridge = self.bridge_namespace
        _ip("link", "set", "lo", "up", namespace=bridge)
        _ip("link", "add", "br0", "type", "bridge", namespace=bridge)
        _ip("link", "set", "br0", "up", namespace=bridge)
        for k in range(self.size):
            host = Host(name=f"{PREFIX}{self.cluster_id}h{k}", address=f"198.18.{self.cluster_id}.{k + 1}",
                        veth="eth0", port=f"p{k}")
            self.hosts.append(host)
            _ip("netns", "add", host.name)
            _ip("link", "set", "lo", "up", namespace=host.name)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", host.port, "netns", bridge,
                namespace=host.name)
            _ip("addr", "add", f"{host.address}/24", "dev", host.veth, namespace=host.name)
            _ip("link", "set", host.veth, "up", namespace=host.name)
            _ip("link", "set", host.port, "master", "br0", namespace=bridge)
            _ip("link", "set", host.port, "up", namespace=bridge)
        self._write_rsh_agent()

    def close(self):
        """Kill every process inside the cluster's namespaces, delete them and the state folder (idempotent)."""
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}
        if self.cluster_id is not None:
            _remove_namespaces(self.cluster_id)
            self.cluster_id = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the id
            self._lock_fd = None

    @property
    def bridge_namespace(self) -> str:
        return f"{PREFIX}{self.cluster_id}br"

    @property
    def subnet(self) -> str:
        return f"198.18.{self.cluster_id}.0/24"

    # -- running things on a host ---------------------------------------------------------------------------
    def popen(self, k: int, argv, **popen_kwargs) -> subprocess.Popen:
        """Start argv on host k (its network namespace, its host name); keyword arguments go to Popen."""
        return subprocess.Popen(self.host_command(k, argv), **popen_kwargs)

    def host_command(self, k: int, argv) -> list:
        """argv run on host k: in its network namespace and, in a UTS namespace, with the host name of its
        namespace (OpenMPI names shared-memory files by host name: one name for all hosts makes them collide)."""
        name = self.hosts[k].name
        return ["ip", "netns", "exec", name, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name,
                *argv]

    def hostfile(self, slots: int) -> str:
        """An OpenMPI hostfile naming every host by address with `slots` ranks each."""
        path = os.path.join(self.state_dir, f"hostfile_{slots}")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{host.address} slots={slots}\n" for host in self.hosts)
        return path

    def _write_rsh_agent(self):
        """mpirun calls `agent [ssh options] HOST COMMAND...`: run COMMAND in HOST's namespace, as ssh would."""
        cases = "".join(f"    {host.address}) ns={host.name} ;;\n" for host in self.hosts)
        self.rsh_agent = os.path.join(self.state_dir, "rsh_agent")
        with open(self.rsh_agent, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\n"
                    "while [ \"${1#-}\" != \"$1\" ]; do shift; done\n"
                    "host=$1; shift\n"
                    "case $host in\n"
                    f"{cases}"
                    "    *) echo \"rsh agent: $host is no host of this local cluster\" >&2; exit 255 ;;\n"
                    "esac\n"
                    "exec ip netns exec \"$ns\" unshare --uts /bin/sh -c \"hostname $ns && $*\"\n")
        os.chmod(self.rsh_agent, 0o755)

    def mpirun_command(self, slots: int, argv, root: bool = os.geteuid() == 0) -> list:
        """`mpirun --hostfile` over every host (`slots` ranks each) through the rsh agent; run it on host 0."""
        return ["mpirun", "--hostfile", self.hostfile(slots), "-n", str(slots * self.size),
                "--mca", "plm_rsh_agent", self.rsh_agent,
                "--mca", "oob_tcp_if_include", self.subnet, "--mca", "btl_tcp_if_include", self.subnet,
                *(["--allow-run-as-root"] if root else []), "--oversubscribe", *argv]

    # -- the network ------------------------------------------------------------------------------------------
    def limit_rate(self, rate: str | None, burst_s: float = 0.004):
        """Cap every host's link to `rate` (tc units, e.g. '10gbit') in both directions by a token bucket on the
        host's interface and on its bridge port; None removes the cap. The bucket holds `burst_s` of the rate
        (at least 256 KiB: veth hands tbf 64 KiB segments)."""
        for host in self.hosts:
            for namespace, device in ((host.name, host.veth), (self.bridge_namespace, host.port)):
                if rate is None:
                    subprocess.run(["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", device, "root"],
                                   capture_output=True)
                    continue
                burst = max(int(_rate_bits(rate) / 8 * burst_s), 256 * 1024)
                _tc(namespace, "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate,
                    "burst", str(burst), "latency", "100ms")

    def link_down(self, k: int):
        """Host k's cable pulled: its bridge port goes down, its packets are lost, no peer is told."""
        _ip("link", "set", self.hosts[k].port, "down", namespace=self.bridge_namespace)

    def link_up(self, k: int):
        _ip("link", "set", self.hosts[k].port, "up", namespace=self.bridge_namespace)


# -- leftovers ------------------------------------------------------------------------------------------------
def cluster_namespaces() -> dict:
    """{cluster id: [its namespaces]} of every local cluster on this machine."""
    if shutil.which("ip") is None:
        return {}
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    clusters = {}
    for line in listed:
        name = line.split(" ")[0]
        match = _NAMESPACE.match(name)
        if match:
            clusters.setdefault(int(match.group(1)), []).append(name)
    return clusters


def _lock_path(cluster_id: int) -> str:
    return f"{_STATE_DIRS}{cluster_id}.lock"


def _try_lock(cluster_id: int) -> int | None:
    """An fd holding the id's lock, or None when another process (or another fd of this one) holds it."""
    fd = os.open(_lock_path(cluster_id), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def cluster_owner(cluster_id: int) -> int | None:
    """Pid of the live process that holds the cluster's id, or None when nobody does (the cluster is a
    leftover). A maker writes its pid just after taking the lock: a blank file is read again for up to a second."""
    fd = _try_lock(cluster_id)
    if fd is not None:
        os.close(fd)
        return None
    deadline = time.monotonic() + 1.0
    while True:
        with open(_lock_path(cluster_id), encoding="utf-8") as f:
            text = f.read().strip()
        if text.isdigit() or time.monotonic() > deadline:
            return int(text) if text.isdigit() else -1  # -1: held, by a pid not yet written
        time.sleep(0.01)


def _kill_namespace_processes(namespace: str):
    """SIGTERM, then after 2 s SIGKILL, every process whose network namespace is this one."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2.0
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                  text=True).stdout.split()
        if not pids:
            return


def _remove_namespaces(cluster_id: int):
    """Kill the processes in, and delete, every namespace of the cluster, and its state folder."""
    for namespace in cluster_namespaces().get(cluster_id, []):
        _kill_namespace_processes(namespace)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    shutil.rmtree(f"{_STATE_DIRS}{cluster_id}", ignore_errors=True)


def remove_cluster(cluster_id: int, force: bool = False) -> bool:
    """Remove a leftover cluster, holding its id meanwhile so that no maker takes it; with `force`, also a
    cluster whose maker still runs. False when it was left because its maker runs."""
    fd = _try_lock(cluster_id)
    if fd is None and not force:
        return False
    try:
        _remove_namespaces(cluster_id)
    finally:
        if fd is not None:
            os.close(fd)
    return True


def leftover_clusters() -> list:
    """Ids of clusters whose maker is no longer running."""
    return sorted(cid for cid in cluster_namespaces() if cluster_owner(cid) is None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="make a cluster, print its hosts, remove it on Ctrl-C / SIGTERM")
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--rate", default=None, help="cap every link, tc units (e.g. 1gbit)")
    verbs.add_parser("list", help="list local clusters and their owners")
    cleanup = verbs.add_parser("cleanup", help="remove clusters whose maker has died")
    cleanup.add_argument("--id", type=int, default=None, help="only this cluster id")
    cleanup.add_argument("--force", action="store_true", help="also clusters whose maker still runs")
    args = parser.parse_args(argv)

    if args.verb == "list":
        for cid, names in sorted(cluster_namespaces().items()):
            owner = cluster_owner(cid)
            print(f"cluster {cid}: {' '.join(sorted(names))} (owner: {'gone' if owner is None else owner})")
        return 0
    if args.verb == "cleanup":
        ids = [cid for cid in cluster_namespaces() if args.id in (None, cid)]
        for cid in sorted(ids):
            if remove_cluster(cid, force=args.force):
                print(f"cluster {cid}: removed")
            else:
                print(f"cluster {cid}: its maker (pid {cluster_owner(cid)}) still runs; --force removes it")
        return 0
    reason = unavailable_reason()
    if reason:
        print(f"cannot make a local cluster: {reason}", file=sys.stderr)
        return 1
    with LocalCluster(hosts=args.hosts) as cluster:
        if args.rate:
            cluster.limit_rate(args.rate)
        for k, host in enumerate(cluster.hosts):
            print(f"host {k}: namespace {host.name}, address {host.address}")
        print(f"hostfile (1 slot): {cluster.hostfile(1)}\nrsh agent: {cluster.rsh_agent}")
        print(f"enter a host: ip netns exec {cluster.hosts[0].name} bash; Ctrl-C removes the cluster", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
