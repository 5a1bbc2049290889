#!/usr/bin/env bash
# Installs what this repo needs on a fresh Debian machine (run as root or with sudo rights):
# g++ (builds the custom CPU kernels of src/kernels), OpenMPI for mpirun, iproute2 and hostname (the multi-host
# tests' simulated hosts: ip netns, tc), the Fashion-MNIST package (the default dataset), the Python requirements.
# Optional: WITH_TORCH=1 also builds .venv-torch (PyTorch + timm + ONNX Runtime) for cross-framework checks, from
# scripts/reference_env/.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq g++ openmpi-bin libopenmpi-dev iproute2 hostname dataset-fashion-mnist >/dev/null
python3 -m pip install -q -r requirements.txt
# MindCV, for the tests only (tests/test_convert_mindcv.py loads its GhostNet checkpoints here). Installed always, not
# only with WITH_TORCH: it needs no torch, and it requires only numpy>=1.17, PyYAML and tqdm, so numpy and
# mindspore stay as requirements.txt pins them.
python3 -m pip install -q mindcv==0.3.0
if [ "${WITH_TORCH:-0}" = "1" ] && [ ! -x .venv-torch/bin/python ]; then
  bash scripts/reference_env/build.sh .venv-torch
fi
python3 -c "import src, mindspore, numpy; print('mindspore', mindspore.__version__, 'numpy', numpy.__version__)"
