#!/usr/bin/env bash
# Evaluate a checkpoint; every argument goes to validate.py, e.g.
#   bash scripts/run_eval.sh --config configs/ghostnet/ghostnet_100_fashion_mnist.yaml --ckpt_path CKPT
set -euo pipefail
exec python "$(dirname "$0")/../validate.py" "$@"
