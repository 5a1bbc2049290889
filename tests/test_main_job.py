"""scripts/main_job.sh, the README's first command, end to end on generated Fashion-MNIST files: it trains,
validates, writes the results page from that validation and exports a MINDIR that export.py checked; run again, it
reuses the finished run."""
import json
import os
import subprocess

import yaml

from tests.data_fixtures import make_idx_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_CONFIG = os.path.join(REPO, "configs", "ghostnet", "ghostnet_100_fashion_mnist.yaml")


def test_main_job_trains_validates_publishes_and_exports(tmp_path):
    with open(MAIN_CONFIG, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config.update(data_dir=make_idx_dataset(str(tmp_path / "fashion"), n_train=48, n_test=24), epochs=1,
                  batch_size=16, eval_batch_size=24, num_workers=1, mode="pynative", ema=False)
    (tmp_path / "main.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    env = dict(os.environ, CONFIG=str(tmp_path / "main.yaml"), OUTPUT_DIR=str(out))
    result = subprocess.run(["bash", "scripts/main_job.sh", "--max_steps_per_epoch", "2"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "main job finished in" in result.stdout and f"outputs in {out}" in result.stdout
    report = json.loads((out / "eval_best_test.json").read_text())
    assert report["num_samples"] == 24
    page = (out / "results.md").read_text()
    assert "```\nbash scripts/main_job.sh\n```" in page and "1 epoch in 0 h" in page
    assert f"| {100 * report['top1']:.2f} | {100 * report['top5']:.2f} | {report['loss']:.4f} |" in page
    assert all((out / "results" / name).stat().st_size > 10_000
               for name in ("loss_curve.png", "accuracy_curve.png", "confusion_matrix.png"))
    assert (out / "ghostnet_100_fashion_mnist.mindir").stat().st_size > 1_000_000

    trained = (out / "best.ckpt").stat().st_mtime_ns  # the same command again reuses the finished run
    again = subprocess.run(["bash", "scripts/main_job.sh", "--max_steps_per_epoch", "2"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 of 1 epochs done" in again.stdout and (out / "best.ckpt").stat().st_mtime_ns == trained
