#!/usr/bin/env bash
# Builds the PyTorch reference environment (PyTorch CPU, timm, ONNX Runtime) that the cross-framework tests and the
# benchmarks run their other half in:  bash scripts/reference_env/build.sh [VENV_DIR]   (default: .venv-torch)
# Its python runs with this folder on PYTHONPATH, so that `import tvshim` can precede torchvision and timm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv=${1:-"$here/../../.venv-torch"}
python3 -m venv "$venv"
# torch alone first: with it installed, torchvision's requirement is met and cannot pull a CUDA build of torch.
"$venv/bin/pip" install -q "$(grep '^torch==' "$here/requirements.txt")"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
PYTHONPATH="$here" "$venv/bin/python" -c "import tvshim, torch, timm, onnxruntime
print('ready: torch', torch.__version__, 'timm', timm.__version__, 'onnxruntime', onnxruntime.__version__)"
