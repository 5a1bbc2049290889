"""A missing capability skips a test here, naming it, and fails it under CI (tests/capabilities.py)."""
import os

import pytest

from tests import capabilities, torch_reference

CI_NOTE = " (CI=true: a test that cannot run is a failure there)"


def outcome(call, *args) -> tuple:
    """("skip" / "fail", message) of what `call(*args)` raised, or ("ran", "")."""
    try:
        call(*args)
    except pytest.skip.Exception as err:
        return "skip", str(err)
    except pytest.fail.Exception as err:
        return "fail", str(err)
    return "ran", ""


@pytest.fixture
def no_programs(tmp_path, monkeypatch):
    """PATH holds only an empty folder: no ip, tc, mpirun or msrun."""
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", ["ip", "tc", "mpirun", "msrun"])
def test_a_missing_program_skips_here_and_fails_under_ci(no_programs, monkeypatch, name):
    monkeypatch.delenv("CI", raising=False)
    assert outcome(capabilities.require, name) == ("skip", f"missing capability {name}: `{name}` is not installed")
    monkeypatch.setenv("CI", "true")
    assert outcome(capabilities.require, name) == (
        "fail", f"missing capability {name}: `{name}` is not installed{CI_NOTE}")


def test_no_permission_for_namespaces_fails_under_ci(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    assert outcome(capabilities.require, "netns") == (
        "fail", f"missing capability netns: network namespaces need root{CI_NOTE}")


def test_a_decorated_test_runs_only_when_it_has_what_it_needs(no_programs, monkeypatch):
    ran = []

    @capabilities.needs("ip", "mpirun")
    def needs_both():
        ran.append(True)

    monkeypatch.setenv("CI", "true")
    assert outcome(needs_both) == ("fail", f"missing capability ip: `ip` is not installed{CI_NOTE}")
    assert ran == []
    for program in ("ip", "mpirun"):
        (no_programs / program).write_text("#!/bin/sh\n")
        os.chmod(no_programs / program, 0o755)
    assert outcome(needs_both) == ("ran", "") and ran == [True]


def test_a_missing_reference_environment_skips_here_and_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_PYTHON", str(tmp_path / "no_python"))
    torch_reference.unavailable.cache_clear()  # the probe is cached per process
    reason = ("missing capability .venv-torch: no PyTorch reference environment: set TORCH_PYTHON or build "
              ".venv-torch (WITH_TORCH=1 scripts/setup.sh)")
    try:
        monkeypatch.delenv("CI", raising=False)
        assert outcome(torch_reference.require, "torch", "timm") == ("skip", reason)
        monkeypatch.setenv("CI", "true")
        assert outcome(capabilities.require, ".venv-torch") == ("fail", reason + CI_NOTE)
    finally:
        torch_reference.unavailable.cache_clear()
