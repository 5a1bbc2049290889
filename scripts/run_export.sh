#!/usr/bin/env bash
# Export a checkpoint for inference and check the file; every argument goes to export.py, e.g.
#   bash scripts/run_export.sh --config configs/ghostnet/ghostnet_100_imagenet.yaml --ckpt_path CKPT --file_format ONNX
set -euo pipefail
exec python "$(dirname "$0")/../export.py" "$@"
