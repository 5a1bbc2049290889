"""What some tests need from the machine beyond the Python environment: programs, permissions, the PyTorch reference
environment. A missing one skips the test here, saying which, but fails it under CI (`CI=true`, set by .ci/run):
there a skip would pass unseen, and CI is where every test must run.

    capabilities.require("ip", "netns")         # in a test or fixture
    @capabilities.needs("mpirun", "mpi4py")     # the same, as a decorator
"""
import functools
import importlib.util
import os
import shutil

import pytest

from scripts import local_cluster


def _program(name):
    return lambda: None if shutil.which(name) else f"`{name}` is not installed"


def _module(name):
    return lambda: None if importlib.util.find_spec(name) else f"the Python package {name} is not installed"


def _torch_env():
    from tests import torch_reference  # imports this module: deferred
    return torch_reference.unavailable()


CHECKS = {  # name -> () -> why it is missing, or None
    "ip": _program("ip"),
    "tc": _program("tc"),
    "mpirun": _program("mpirun"),
    "msrun": _program("msrun"),
    "mpi4py": _module("mpi4py"),
    "netns": local_cluster.unavailable_reason,  # root, and `ip netns add` allowed
    ".venv-torch": _torch_env,
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def enforce(name: str, reason):
    """Nothing when `reason` is None; else skip the calling test, or under CI fail it, naming capability `name`."""
    if reason is None:
        return
    message = f"missing capability {name}: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a test that cannot run is a failure there)", pytrace=False)
    pytest.skip(message)


def require(*names: str):
    """`enforce` each of `names` (keys of CHECKS), in order."""
    for name in names:
        enforce(name, CHECKS[name]())


def needs(*names: str):
    """Decorator: the test calls `require(*names)` first (fixtures it takes are set up before)."""
    def decorate(test):
        @functools.wraps(test)
        def checked(*args, **kwargs):
            require(*names)
            return test(*args, **kwargs)
        return checked
    return decorate
