"""Run code in the optional PyTorch reference environment from tests that run in the MindSpore environment.

Torch is kept out of the main environment on purpose; cross-framework checks (weight conversion, ONNX, speed)
run their PyTorch / timm / onnxruntime half in a subprocess of the reference interpreter and exchange files.

The interpreter is `$TORCH_PYTHON`, else `<repo>/.venv-torch/bin/python` (built by `WITH_TORCH=1
scripts/setup.sh`). Its PYTHONPATH holds only the directory of `tvshim.py` (`$TVSHIM_DIR`, else
`<repo>/../shared/tools`): snippets that use timm or torchvision must `import tvshim` before them.

    from tests import torch_reference
    torch_reference.require("torch", "timm")          # pytest.skip with the reason when unavailable
    out = torch_reference.run("import sys, torch; print(torch.__version__, sys.argv[1])", "arg")
"""
import functools
import os
import subprocess
from pathlib import Path
from typing import Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def interpreter() -> Optional[Path]:
    """The reference environment's python, or None when there is none."""
    path = Path(os.environ.get("TORCH_PYTHON") or REPO_ROOT / ".venv-torch" / "bin" / "python")
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _env() -> dict:
    """The caller's environment with PYTHONPATH replaced: the repo's `src` must not shadow anything there."""
    env = dict(os.environ)
    shim = Path(os.environ.get("TVSHIM_DIR") or REPO_ROOT.parent / "shared" / "tools")
    env["PYTHONPATH"] = str(shim) if (shim / "tvshim.py").is_file() else ""
    return env


@functools.lru_cache(maxsize=None)
def unavailable(*modules: str) -> Optional[str]:
    """Why the reference environment cannot import `modules` (found without importing them), or None."""
    python = interpreter()
    if python is None:
        return ("no PyTorch reference environment: set TORCH_PYTHON or build .venv-torch "
                "(WITH_TORCH=1 scripts/setup.sh)")
    probe = "import importlib.util as u, sys; print(*(m for m in sys.argv[1:] if u.find_spec(m) is None))"
    result = subprocess.run([str(python), "-c", probe, *modules], capture_output=True, text=True, env=_env(),
                            timeout=120)
    if result.returncode != 0:
        return f"{python} does not run: {result.stderr.strip()[-500:]}"
    missing = result.stdout.split()
    return f"{python} lacks {', '.join(missing)}" if missing else None


def available(*modules: str) -> bool:
    return unavailable(*modules) is None


def require(*modules: str) -> Path:
    """The interpreter, after skipping the calling test when it is missing or lacks `modules`."""
    reason = unavailable(*modules)
    if reason:
        pytest.skip(reason)
    return interpreter()


def run(code: str, *args: str, timeout: float = 600, cwd=None) -> str:
    """Run `code` (with `args` in sys.argv[1:]) in the reference environment; its stdout, or RuntimeError."""
    python = interpreter()
    if python is None:
        raise RuntimeError(unavailable())
    result = subprocess.run([str(python), "-c", code, *map(str, args)], capture_output=True, text=True,
                            env=_env(), cwd=cwd, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"reference snippet failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout
