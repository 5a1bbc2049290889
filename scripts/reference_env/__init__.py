"""Where the reference environment's python is and how to run it: with this folder (tvshim) alone on PYTHONPATH,
so that the repo's `src` shadows nothing there. `bash scripts/reference_env/build.sh` makes it."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def interpreter():
    """`$TORCH_PYTHON`, else `<repo>/.venv-torch/bin/python`; None when that is not an executable file."""
    path = os.environ.get("TORCH_PYTHON") or os.path.join(REPO, ".venv-torch", "bin", "python")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def environment() -> dict:
    """This process's environment, PYTHONPATH replaced by this folder."""
    return dict(os.environ, PYTHONPATH=HERE)
