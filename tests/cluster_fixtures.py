"""Simulated hosts for the multi-host tests: `local_cluster` gives a 2-host scripts/local_cluster.py cluster and
removes it, with every process in it, after the test however it ended. Where one cannot be made (no `ip` / `tc`,
no root or `ip netns`, no mpirun or msrun) the test skips naming what is missing, or fails under CI
(tests/capabilities.py)."""
import pytest

from scripts.local_cluster import LocalCluster
from tests import capabilities

CLUSTER = ("ip", "tc", "netns")  # what making a cluster needs


@pytest.fixture
def local_cluster():
    capabilities.require(*CLUSTER, "mpirun", "msrun")
    with LocalCluster(hosts=2) as cluster:
        yield cluster
