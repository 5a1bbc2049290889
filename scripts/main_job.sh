#!/usr/bin/env bash
# The main job: train GhostNet 1.0x on Fashion-MNIST, evaluate the best checkpoint, export it to MINDIR
# (export.py loads the file back and checks it against the checkpoint), and write the run's results page
# (report, curves, confusion matrix: $out/results.md). Extra arguments go to train.py.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${CONFIG:-configs/ghostnet/ghostnet_100_fashion_mnist.yaml}
out=${OUTPUT_DIR:-outputs/ghostnet_100_fashion_mnist}
start=$(date +%s)
python train.py --config "$config" --output_dir "$out" --resume auto "$@"  # a rerun continues or reuses the run
python validate.py --config "$config" --output_dir "$out" --ckpt_path "$out/best.ckpt"
report=$(ls -t "$out"/eval_best_*.json | head -n 1)
python scripts/results_page.py --run "$out" --eval "$report" --page "$out/results.md" --command "bash scripts/main_job.sh"
python export.py --config "$config" --ckpt_path "$out/best.ckpt" --output "$out/ghostnet_100_fashion_mnist.mindir"
echo "main job finished in $(( $(date +%s) - start )) s; outputs in $out"
