"""Simulated hosts for the multi-host tests: `local_cluster` gives a 2-host scripts/local_cluster.py cluster and
removes it afterwards, whatever the test did; it skips, saying why, where namespaces cannot be made."""
import shutil

import pytest

from scripts.local_cluster import LocalCluster, unavailable_reason


def cluster_unavailable(*programs) -> str | None:
    """Why a multi-host test cannot run here (no root / `ip netns`, or one of `programs` missing), or None."""
    for program in programs:
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return unavailable_reason()


@pytest.fixture
def local_cluster():
    reason = cluster_unavailable("mpirun", "msrun")
    if reason:
        pytest.skip(f"no local cluster: {reason}")
    with LocalCluster(hosts=2) as cluster:
        yield cluster
