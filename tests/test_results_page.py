"""scripts/results_page.py: the page of a finished run carries the run's and the report's own figures, its images
are real PNGs, its folder keeps the run's record, a repeat is judged against the 0.3-point bar (only a finished
one), and a missing or broken input is named."""
import json
import os
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from scripts import results_page
from src.config import Config, save_config
from src.engine.history import MetricsHistory
from src.engine.metrics import ClassificationMeter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGITS = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0, 3.0, 1.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]], np.float32)
LABELS = np.array([0, 0, 1, 2, 2])  # predicted 0, 1, 1, 2, 0


def _run_dir(path, last_top1, epoch_seconds=600.0, validated=True):
    """A train.py-style output directory: its resolved config and a 3-epoch metrics.json (without validation
    figures, as `val_interval: 0` leaves it, when not `validated`)."""
    os.makedirs(path)
    save_config(Config(model="ghostnet_100", small_input=True, image_size=28, epochs=3, re_prob=0.25),
                str(path / "config.yaml"))
    history = MetricsHistory(str(path))
    for epoch, top1 in zip((1, 2, 3), (0.80, 0.88, last_top1)):
        history.add_step(epoch - 0.5, 1.0 / epoch, top1 - 0.05, 1e-3)
        history.add_epoch({"epoch": epoch, "lr": 1e-3, "train_loss": 1.0 / epoch, "train_acc": top1 - 0.05,
                           "val_loss": 0.5 / epoch if validated else None, "val_top1": top1 if validated else None,
                           "val_top5": 0.99 if validated else None, "train_time_s": epoch_seconds,
                           "val_time_s": 30.0 if validated else None, "images_per_s": 100.0})
    return str(path)


def _report(path):
    meter = ClassificationMeter(3, topk=(1, 2))
    meter.update(LOGITS, LABELS)
    report = {"model": "ghostnet_100", "checkpoint": "run/epoch_0003.ckpt", "dataset": "fashion_mnist",
              "split": "test", **meter.report(["Coat", "Shirt", "Bag"])}
    report["top5"] = report.pop("top2")
    path.write_text(json.dumps(report))
    return str(path), report


def test_page_holds_the_runs_figures_and_real_images(tmp_path):
    run = _run_dir(tmp_path / "run", 0.9050)
    rerun = _run_dir(tmp_path / "rerun", 0.9030, epoch_seconds=660.0)
    eval_path, report = _report(tmp_path / "eval.json")
    page = tmp_path / "docs" / "page.md"
    assert results_page.main(["--run", run, "--eval", eval_path, "--rerun", rerun, "--page", str(page),
                              "--command", "python train.py --config X"]) == 0
    text = page.read_text()
    assert "```\npython train.py --config X\n```" in text
    assert "| small_input | True |" in text and "| re_prob | 0.25 |" in text
    # 3 epochs x (600 s + 30 s) = 31.5 min; repeat 3 x 690 s = 34.5 min
    assert "3 epochs in 0 h 31 min" in text and "after the last epoch 90.50%, best epoch 90.50%" in text
    assert "| first | 3 | 90.50 | 90.50 | 0 h 31 min |" in text
    assert "| repeat | 3 | 90.30 | 90.30 | 0 h 34 min |" in text
    assert "Difference in last-epoch top-1: 0.20 points (within 0.3 points)." in text
    macro = report["macro_avg"]
    assert (f"| 60.00 | {100 * report['top5']:.2f} | {report['loss']:.4f} | {macro['precision']:.4f} | "
            f"{macro['recall']:.4f} | {macro['f1']:.4f} |") in text
    assert "| Shirt | 0.5000 | 1.0000 | 0.6667 | 1 |" in text  # predicted twice, right once; its one image found
    assert "| Bag | 1 | 0 | 1 |" in text  # rows: true Bag -> Coat once, Bag once
    for name in ("loss_curve.png", "accuracy_curve.png", "confusion_matrix.png"):
        assert f"(page/{name})" in text
        image = matplotlib.image.imread(str(tmp_path / "docs" / "page" / name))
        assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0.01  # drawn, not blank


def test_the_page_keeps_the_runs_record_and_can_be_remade_from_it(tmp_path):
    """The page's folder holds config.yaml, metrics.json and eval.json: with the output directory gone, the same
    page comes back from that folder alone, and it can be the run a later repeat is judged against."""
    run = _run_dir(tmp_path / "run", 0.9050)
    eval_path, _ = _report(tmp_path / "eval.json")
    page = tmp_path / "docs" / "page.md"
    results_page.main(["--run", run, "--eval", eval_path, "--page", str(page)])
    first = page.read_text()
    record = tmp_path / "docs" / "page"
    assert json.loads((record / "metrics.json").read_text())["epochs"][-1]["val_top1"] == 0.9050
    assert json.loads((record / "eval.json").read_text()) == json.loads((tmp_path / "eval.json").read_text())
    shutil.rmtree(run)
    os.remove(eval_path)
    results_page.main(["--run", str(record), "--eval", str(record / "eval.json"), "--page", str(page)])
    assert page.read_text() == first
    rerun = _run_dir(tmp_path / "rerun", 0.9030)
    results_page.main(["--run", str(record), "--eval", str(record / "eval.json"), "--rerun", rerun,
                       "--page", str(page)])
    assert "Difference in last-epoch top-1: 0.20 points (within 0.3 points)." in page.read_text()


def test_an_unfinished_repeat_is_refused_naming_both_epoch_counts(tmp_path):
    run = _run_dir(tmp_path / "run", 0.9050)
    rerun = _run_dir(tmp_path / "rerun", 0.9050)
    metrics = json.loads((tmp_path / "rerun" / "metrics.json").read_text())
    metrics["epochs"] = metrics["epochs"][:2]  # stopped after epoch 2 of 3
    (tmp_path / "rerun" / "metrics.json").write_text(json.dumps(metrics))
    eval_path, _ = _report(tmp_path / "eval.json")
    with pytest.raises(results_page.ResultsError, match="--rerun has 2 finished epochs and the run 3"):
        results_page.main(["--run", run, "--eval", eval_path, "--rerun", rerun, "--page", str(tmp_path / "p.md")])
    assert not os.path.exists(tmp_path / "p.md")


def test_a_repeat_beyond_the_bar_is_reported_as_such(tmp_path):
    run = _run_dir(tmp_path / "run", 0.9450)
    rerun = _run_dir(tmp_path / "rerun", 0.9400)
    eval_path, _ = _report(tmp_path / "eval.json")
    page = tmp_path / "page.md"
    results_page.main(["--run", run, "--eval", eval_path, "--rerun", rerun, "--page", str(page)])
    assert "Difference in last-epoch top-1: 0.50 points (outside 0.3 points)." in page.read_text()


def test_a_run_without_validation_gets_a_page_but_no_reproduction_verdict(tmp_path):
    run = _run_dir(tmp_path / "run", 0.9, validated=False)
    eval_path, _ = _report(tmp_path / "eval.json")
    page = tmp_path / "page.md"
    results_page.main(["--run", run, "--eval", eval_path, "--page", str(page)])
    assert "3 epochs in 0 h 30 min of training and validation (600 s per epoch); no validation during training." \
        in page.read_text()
    with pytest.raises(results_page.ResultsError, match="one of the runs did not record"):
        results_page.main(["--run", run, "--eval", eval_path, "--rerun", _run_dir(tmp_path / "again", 0.9),
                           "--page", str(page)])


def test_missing_and_unreadable_inputs_are_named(tmp_path):
    run = _run_dir(tmp_path / "run", 0.9)
    eval_path, _ = _report(tmp_path / "eval.json")
    with pytest.raises(results_page.ResultsError, match=f"run metrics not found: {tmp_path / 'nowhere'}/metrics"):
        os.makedirs(tmp_path / "nowhere")
        save_config(Config(), str(tmp_path / "nowhere" / "config.yaml"))
        results_page.main(["--run", str(tmp_path / "nowhere"), "--eval", eval_path, "--page", str(tmp_path / "p.md")])
    (tmp_path / "broken.json").write_text("{not json")
    result = subprocess.run([sys.executable, "scripts/results_page.py", "--run", run, "--eval",
                             str(tmp_path / "broken.json"), "--page", str(tmp_path / "p.md")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"results_page.py: error: evaluation report {tmp_path / 'broken.json'} is not readable" in result.stderr
