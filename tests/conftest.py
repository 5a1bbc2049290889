"""Put the repo root on sys.path and import `src` before anything imports mindspore (it picks the CPU kernels);
start every test in MindSpore's default execution mode; keep the end of the test run's output readable."""
import atexit
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401
import mindspore  # noqa: E402


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
