#!/usr/bin/env bash
# Single-device training; every argument goes to train.py, e.g.
#   bash scripts/run_standalone_train.sh --config configs/ghostnet/ghostnet_100_fashion_mnist.yaml [--key value ...]
set -euo pipefail
exec python "$(dirname "$0")/../train.py" "$@"
