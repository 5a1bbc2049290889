"""Run code in the optional PyTorch reference environment from tests that run in the MindSpore environment.

Torch is kept out of the main environment on purpose; cross-framework checks (weight conversion, ONNX, speed)
run their PyTorch / timm / onnxruntime half in a subprocess of the reference interpreter and exchange files.

The interpreter is `$TORCH_PYTHON`, else `<repo>/.venv-torch/bin/python`, built from scripts/reference_env/ by
`WITH_TORCH=1 scripts/setup.sh`. Its PYTHONPATH holds only that folder: snippets that use timm or torchvision must
`import tvshim` before them.

    from tests import torch_reference
    torch_reference.require("torch", "timm")          # skip with the reason when unavailable (under CI: fail)
    out = torch_reference.run("import sys, torch; print(torch.__version__, sys.argv[1])", "arg")
"""
import functools
import subprocess
from typing import Optional

from scripts.reference_env import environment as _env, interpreter
from tests import capabilities


@functools.lru_cache(maxsize=None)
def unavailable(*modules: str) -> Optional[str]:
    """Why the reference environment cannot import `modules` (found without importing them), or None."""
    python = interpreter()
    if python is None:
        return ("no PyTorch reference environment: set TORCH_PYTHON or build .venv-torch "
                "(WITH_TORCH=1 scripts/setup.sh)")
    probe = "import importlib.util as u, sys; print(*(m for m in sys.argv[1:] if u.find_spec(m) is None))"
    result = subprocess.run([python, "-c", probe, *modules], capture_output=True, text=True, env=_env(),
                            timeout=120)
    if result.returncode != 0:
        return f"{python} does not run: {result.stderr.strip()[-500:]}"
    missing = result.stdout.split()
    return f"{python} lacks {', '.join(missing)}" if missing else None


def require(*modules: str) -> str:
    """The interpreter, after skipping (under CI: failing) the calling test when it is missing or lacks `modules`."""
    capabilities.enforce(".venv-torch", unavailable(*modules))
    return interpreter()


def run(code: str, *args: str, timeout: float = 600, cwd=None) -> str:
    """Run `code` (with `args` in sys.argv[1:]) in the reference environment; its stdout, or RuntimeError."""
    python = interpreter()
    if python is None:
        raise RuntimeError(unavailable())
    result = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True,
                            env=_env(), cwd=cwd, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"reference snippet failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout
