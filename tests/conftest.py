"""Put the repo root on sys.path and import `src` before anything imports mindspore (it picks the CPU kernels);
start every test in MindSpore's default execution mode; keep the end of the test run's output readable; fail the
session if it leaves a local cluster or a process it started behind."""
import atexit
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401
import mindspore  # noqa: E402

from scripts import local_cluster  # noqa: E402

SESSION_MARK = "GHOSTNET_TEST_SESSION"
os.environ[SESSION_MARK] = str(os.getpid())  # inherited by every process a test starts, across launchers


@pytest.fixture(autouse=True)
def pynative_mode():
    """PyNative, MindSpore's default, whatever the test before set: train.py and export.py set the mode of their
    config, and a graph mode left behind makes later tests compile whole networks (minutes each on a 2-core CPU).
    Tests of graph mode set it themselves."""
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)


@atexit.register
def _quiet_cell_teardown():
    """Cells that outlive the session are freed after mindspore's module globals are gone, and each Cell.__del__
    then prints an ignored AttributeError: hundreds of lines after pytest's summary, burying it. The process is
    exiting, so the bookkeeping that __del__ does no longer matters."""
    mindspore.nn.Cell.__del__ = lambda self: None


def _processes_of_this_session() -> list:
    """(pid, command line) of live processes that carry this session's mark and are no longer pytest's
    descendants: what a test started and lost track of (a launcher's scheduler, a rank whose launcher died).
    Descendants are left out: MindSpore's dataset workers stay until pytest itself exits."""
    mark, parents, marked = f"{SESSION_MARK}={os.getpid()}".encode(), {}, []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            with open(f"/proc/{entry}/environ", "rb") as f:
                if fields[0] != b"Z" and mark in f.read().split(b"\0"):
                    marked.append(int(entry))
        except OSError:
            continue
    found = []
    for pid in marked:
        ancestor = pid
        while ancestor not in (0, 1, os.getpid()):
            ancestor = parents.get(ancestor, 0)
        if ancestor == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append((pid, f.read().replace(b"\0", b" ").decode(errors="replace").strip()))
        except OSError:
            continue
    return found


def pytest_sessionfinish(session):
    """No scheduler, worker or launcher a test started, and no namespace of a cluster it made, may outlive the
    session: a leftover fails the run by name (and is then removed, so the machine stays clean)."""
    deadline = time.monotonic() + 10.0  # a scheduler may take a few seconds to notice its workers have gone
    while (strays := _processes_of_this_session()) and time.monotonic() < deadline:
        time.sleep(0.5)
    clusters = [cid for cid, _ in local_cluster.cluster_namespaces().items()
                if local_cluster.cluster_owner(cid) in (None, os.getpid())]
    if not strays and not clusters:
        return
    lines = [f"left running by the tests: pid {pid}: {command[:200]}" for pid, command in strays]
    lines += [f"left behind by the tests: local cluster {cid} ({' '.join(names)})"
              for cid, names in local_cluster.cluster_namespaces().items() if cid in clusters]
    sys.stderr.write("\nSESSION LEAK\n" + "\n".join(lines) + "\n")
    for pid, _ in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for cid in clusters:
        local_cluster.remove_cluster(cid)
    session.exitstatus = 1
