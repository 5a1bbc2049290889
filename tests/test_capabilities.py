"""A missing capability skips a test here, naming it, and fails it under CI (tests/capabilities.py)."""
import os

import pytest

from tests import capabilities, torch_reference


@pytest.fixture
def no_programs(tmp_path, monkeypatch):
    """PATH holds only an empty folder: no ip, tc, mpirun or msrun."""
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", ["ip", "tc", "mpirun", "msrun"])
def test_a_missing_program_skips_here_and_fails_under_ci(no_programs, monkeypatch, name):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"^missing capability {name}: `{name}` is not installed$"):
        capabilities.require(name)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"^missing capability {name}: `{name}` is not installed "
                                                    r"\(CI=true: a test that cannot run is a failure there\)$"):
        capabilities.require(name)


def test_a_present_program_passes_under_ci(no_programs, monkeypatch):
    (no_programs / "tc").write_text("#!/bin/sh\n")
    os.chmod(no_programs / "tc", 0o755)
    monkeypatch.setenv("CI", "true")
    assert capabilities.require("tc") is None


def test_no_permission_for_namespaces_fails_under_ci(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="^missing capability netns: network namespaces need root"):
        capabilities.require("netns")


def test_a_decorated_test_checks_before_it_runs(no_programs, monkeypatch):
    ran = []

    @capabilities.needs("ip", "mpirun")
    def needs_both():
        ran.append(True)

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="^missing capability ip: "):
        needs_both()
    assert ran == []


def test_a_missing_reference_environment_skips_here_and_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_PYTHON", str(tmp_path / "no_python"))
    torch_reference.unavailable.cache_clear()  # the probe is cached per process
    try:
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="^missing capability .venv-torch: no PyTorch reference"):
            torch_reference.require("torch", "timm")
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="^missing capability .venv-torch: no PyTorch reference"):
            capabilities.require(".venv-torch")
    finally:
        torch_reference.unavailable.cache_clear()
