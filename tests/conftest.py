"""Put the repo root on sys.path and import `src` before anything imports mindspore (it picks the CPU kernels);
start every test in MindSpore's default execution mode; keep the end of the test run's output readable; fail the
session if it leaves a local cluster or a process it started behind."""
import atexit
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401
import mindspore  # noqa: E402

from scripts import local_cluster  # noqa: E402
from tests import session_check  # noqa: E402

session_check.mark_processes_started_from_here()
_CLUSTERS_BEFORE, _WORKER_LEAKS = pytest.StashKey[set](), pytest.StashKey[list]()


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


def pytest_sessionstart(session):
    session.config.stash[_CLUSTERS_BEFORE] = set(local_cluster.cluster_namespaces())


def pytest_sessionfinish(session):
    """Leftovers fail the run (tests/session_check.py): here, or through the controller from an xdist worker."""
    config = session.config
    if config.pluginmanager.has_plugin("dsession"):  # the xdist controller: it runs no test
        lines = config.stash.get(_WORKER_LEAKS, [])
    else:
        lines = session_check.check(config.stash[_CLUSTERS_BEFORE])
        if hasattr(config, "workeroutput"):
            config.workeroutput[session_check.WORKER_OUTPUT_KEY] = lines
    if lines:
        session_check.report(lines, session)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The xdist controller collects what each worker's session-end check found."""
    found = getattr(node, "workeroutput", {}).get(session_check.WORKER_OUTPUT_KEY, [])
    node.config.stash.setdefault(_WORKER_LEAKS, []).extend(found)
