"""The session-end check (tests/session_check.py) fails the run, with and without pytest-xdist, when a test leaves
a process or a local cluster behind, and names it; a clean run passes. Each case is a real pytest run, in a
subprocess, of a planted test file with this repo's conftest."""
import os
import subprocess
import sys
import textwrap

import pytest

from scripts import local_cluster
from tests import capabilities
from tests.cluster_fixtures import CLUSTER

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANTED = {
    "process": """
        import subprocess

        def test_leaves_a_process():
            subprocess.Popen(["sleep", "317"])  # a child of pytest, never waited for
        """,
    "cluster": """
        import os
        from scripts.local_cluster import LocalCluster

        def test_leaves_a_cluster():
            cluster = LocalCluster(hosts=1).__enter__()  # never left
            with open(os.environ["PLANTED_CLUSTER_ID"], "w") as f:
                f.write(str(cluster.cluster_id))
        """,
    "clean": """
        import subprocess

        def test_waits_for_its_process():
            assert subprocess.run(["sleep", "0.1"]).returncode == 0
        """,
}


def _pytest(tmp_path, planted: str, *options) -> subprocess.CompletedProcess:
    """pytest on the planted test file, with tests/conftest.py as a plugin (the file lies outside tests/)."""
    test_file = tmp_path / f"test_planted_{planted}.py"
    test_file.write_text(textwrap.dedent(PLANTED[planted]))
    env = dict(os.environ, PLANTED_CLUSTER_ID=str(tmp_path / "cluster_id"))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(tmp_path), str(test_file), *options], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


XDIST = pytest.mark.parametrize("options", [(), ("-n", "2")], ids=["one process", "xdist -n 2"])


@XDIST
def test_a_leaked_process_fails_the_run_by_name(tmp_path, options):
    result = _pytest(tmp_path, "process", *options)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "1 passed" in output and "SESSION LEAK" in output, output[-3000:]
    assert [line for line in output.splitlines() if "left running by the tests" in line and "sleep 317" in line]
    assert not [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
                .splitlines() if line == "sleep 317"]  # and it was killed


@XDIST
def test_a_leaked_cluster_fails_the_run_by_name(tmp_path, options):
    capabilities.require(*CLUSTER)
    result = _pytest(tmp_path, "cluster", *options)
    output = result.stdout + result.stderr
    assert (tmp_path / "cluster_id").is_file(), output[-3000:]  # the planted test made its cluster
    cluster_id = int((tmp_path / "cluster_id").read_text())
    assert result.returncode == 1, output[-3000:]
    assert "1 passed" in output and "SESSION LEAK" in output, output[-3000:]
    assert f"left behind by the tests: local cluster {cluster_id} (gn{cluster_id}br gn{cluster_id}h0)" in output
    assert cluster_id not in local_cluster.cluster_namespaces()  # and it was removed


def test_a_run_that_leaves_nothing_passes(tmp_path):
    result = _pytest(tmp_path, "clean", "-n", "2")
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "1 passed" in output, output[-3000:]
    assert "SESSION LEAK" not in output
