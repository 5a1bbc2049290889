#!/usr/bin/env bash
# Data-parallel training on N devices (CPU, GPU or Ascend) through mpirun; the rest goes to train.py, e.g.
#   bash scripts/run_distribute_train.sh 8 configs/ghostnet/ghostnet_100_imagenet.yaml --data_dir /data/imagenet
# Root needs --allow-run-as-root; more ranks than cores needs --oversubscribe: pass them in MPIRUN_ARGS.
set -euo pipefail
n=$1; config=$2; shift 2
exec mpirun ${MPIRUN_ARGS:-} -n "$n" python "$(dirname "$0")/../train.py" --config "$config" "$@"
