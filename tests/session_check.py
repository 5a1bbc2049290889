"""The test session's end check (hooks in tests/conftest.py): no process a test started and no local cluster a test
made may outlive the session. A leftover fails the run, named, and is then removed, so the machine stays clean.

- A process is the session's when its environment holds MARK=<pid of this pytest process>: conftest sets it, and
  every process a test starts inherits it, across launchers (mpirun, msrun, the cluster's `ip netns exec`).
  /proc/<pid>/environ is the environment a process was started (exec'd) with, so forks of pytest itself, such as
  MindSpore's dataset workers, hold the mark pytest was started without: nothing needs exempting for them.
- A cluster (scripts/local_cluster.py) is the session's when it appeared during the session and its maker is this
  process, carries the mark, or is gone (a leftover). Clusters of other pytest processes on the machine, an xdist
  worker beside this one among them, have a live maker without the mark and are left alone.
- Under pytest-xdist each worker checks itself at its end and passes what it found to the controller in
  `workeroutput`; the controller prints it and sets the run's exit status, which a worker's own cannot set.
"""
import os
import signal
import sys
import time

from scripts import local_cluster

MARK = "GHOSTNET_TEST_SESSION"
WORKER_OUTPUT_KEY = "session_leaks"
_MARKED = f"{MARK}={os.getpid()}".encode()


def mark_processes_started_from_here():
    """Every process started from now on (and what it starts) carries this pytest process's mark."""
    os.environ[MARK] = str(os.getpid())


def _environ(pid) -> list:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read().split(b"\0")


def stray_processes() -> list:
    """(pid, command line) of live processes other than this one that carry this process's mark."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            if _MARKED not in _environ(entry):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found.append((int(entry), f.read().replace(b"\0", b" ").decode(errors="replace").strip()))
        except (OSError, IndexError):
            continue
    return found


def _made_here(cluster_id) -> bool:
    """Its maker is this process, a process carrying the mark, or gone."""
    owner = local_cluster.cluster_owner(cluster_id)
    if owner is None or owner == os.getpid():
        return True
    if owner < 0:  # being made by a process that has not written its pid yet: not known to be ours
        return False
    try:
        return _MARKED in _environ(owner)
    except OSError:  # the owner ended meanwhile
        return True


def stray_clusters(before) -> dict:
    """{cluster id: namespaces} of the clusters made by this session (none of `before`) that still exist."""
    return {cid: names for cid, names in local_cluster.cluster_namespaces().items()
            if cid not in before and _made_here(cid)}


def check(before, wait_s: float = 10.0) -> list:
    """One line per leftover, after removing them all; [] when there is none. A scheduler may take a few seconds
    to notice that its workers have gone: processes get `wait_s` to end."""
    deadline = time.monotonic() + wait_s
    while (processes := stray_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    clusters = stray_clusters(before)
    lines = [f"left running by the tests: pid {pid}: {command[:200]}" for pid, command in processes]
    lines += [f"left behind by the tests: local cluster {cid} ({' '.join(sorted(names))})"
              for cid, names in clusters.items()]
    for pid, _ in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for cid in clusters:
        local_cluster.remove_cluster(cid, force=True)
    return lines


def report(lines, session):
    """Print the leftovers and fail the run."""
    sys.stderr.write("\nSESSION LEAK\n" + "\n".join(lines) + "\n")
    session.exitstatus = 1
