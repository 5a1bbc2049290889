"""validate.py and the evaluator: metrics on a hand-computed case, the printed and JSON report, and checkpoints
that do not fit (an error naming the keys or the file, never a silent chance-level score)."""
import json
import os
import subprocess
import sys

import matplotlib.image
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import Tensor

import validate
from src.checkpoint import CheckpointError, save_checkpoint
from src.config import ConfigError
from src.engine.evaluate import evaluate
from src.engine.metrics import format_report
from tests.engine_fixtures import TinyNet, tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Six samples, three classes: (label, logits). Predictions 0, 1, 1, 2, 0, 0; second choices 1, 2, 0, 1, 2, 2.
LABELS = np.array([0, 0, 1, 2, 2, 1], np.int32)
LOGITS = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0, 3.0, 1.0],
                   [1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [3.0, 1.0, 2.0]], np.float32)


def test_metrics_on_a_hand_computed_case():
    dataset = ds.NumpySlicesDataset((np.arange(6, dtype=np.int32), LABELS), ["index", "label"],
                                    shuffle=False).batch(4)
    network = lambda index: Tensor(LOGITS[index.asnumpy()])  # noqa: E731  any callable is evaluated
    report = evaluate(network, dataset, 3, ["a", "b", "c"])
    # rows true, columns predicted: a -> a, b; b -> b, a; c -> c, a
    assert report["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [1, 0, 1]]
    assert report["top1"] == pytest.approx(3 / 6)
    assert report["top5"] == 1.0  # top-min(5, 3): every label is among the three
    precision, recall = [1 / 3, 1 / 2, 1.0], [1 / 2, 1 / 2, 1 / 2]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    for row, p, r, f in zip(report["per_class"], precision, recall, f1):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p, r, f, 2))
    assert report["macro_avg"]["f1"] == pytest.approx(np.mean(f1))
    assert report["weighted_avg"]["precision"] == pytest.approx(np.mean(precision))
    log_softmax = LOGITS - np.log(np.exp(LOGITS).sum(1, keepdims=True))
    assert report["loss"] == pytest.approx(-log_softmax[np.arange(6), LABELS].mean(), rel=1e-6)
    text = format_report(report)
    assert "           b     0.5000     0.5000     0.5000        2" in text
    assert "    accuracy                           0.5000        6" in text


def test_top2_and_a_class_never_predicted():
    from src.engine.metrics import ClassificationMeter
    meter = ClassificationMeter(3, topk=(1, 2))
    meter.update(LOGITS, LABELS)
    report = meter.report()
    assert report["top2"] == pytest.approx(4 / 6)  # samples 0, 1, 2, 3 have the label in their top two
    meter = ClassificationMeter(3)
    meter.update(np.array([[1.0, 0, 0], [1.0, 0, 0]]), np.array([0, 2]))
    per_class = meter.report()["per_class"]
    assert [r["precision"] for r in per_class] == [0.5, 0.0, 0.0] and per_class[1]["support"] == 0


def _checkpoint(tmp_path, name="weights.ckpt", **net_options):
    path = str(tmp_path / name)
    save_checkpoint(path, {p.name: p for p in TinyNet(**net_options).get_parameters()}, {"model": "tiny_net"})
    return path


def test_validate_prints_and_writes_the_report(tmp_path, capsys):
    cfg = tiny_config(tmp_path, eval_batch_size=16, output_dir=str(tmp_path / "eval"))
    ckpt = _checkpoint(tmp_path)
    report = validate.main(["--config", write_config(cfg, tmp_path / "cfg.yaml"), "--ckpt_path", ckpt])
    out = capsys.readouterr().out
    path = tmp_path / "eval" / "eval_weights_test.json"
    assert f"report written to {path} (confusion matrix: {tmp_path / 'eval' / 'eval_weights_test.png'})" in out
    heat_map = matplotlib.image.imread(str(tmp_path / "eval" / "eval_weights_test.png"))
    assert heat_map.ndim == 3 and heat_map.std() > 0.01
    assert f"loaded trained weights of tiny_net from {ckpt}" in out
    assert "precision     recall   f1-score  support" in out and "confusion matrix" in out
    assert "T-shirt/top" in out and "macro avg" in out and "weighted avg" in out
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["num_samples"] == 40 and np.sum(saved["confusion_matrix"]) == 40
    assert sum(r["support"] for r in saved["per_class"]) == 40 and 0 <= saved["top1"] <= saved["top5"] <= 1


def test_validate_uses_the_ema_weights_of_a_training_checkpoint(tmp_path, capsys):
    net, average = TinyNet(), TinyNet()
    tensors = {p.name: p for p in net.get_parameters()}
    tensors.update({f"ema.{p.name}": p for p in average.get_parameters()})
    tensors["state.optimizer.global_step"] = Tensor(np.array([7], np.int32))
    save_checkpoint(str(tmp_path / "epoch_0001.ckpt"), tensors, {"epoch": 1})
    cfg = tiny_config(tmp_path)
    validate.main(["--config", write_config(cfg, tmp_path / "cfg.yaml"),
                   "--ckpt_path", str(tmp_path / "epoch_0001.ckpt")])
    assert "loaded EMA weights of tiny_net" in capsys.readouterr().out


def test_wrong_checkpoint_is_an_error_naming_the_keys(tmp_path):
    cfg_path = write_config(tiny_config(tmp_path), tmp_path / "cfg.yaml")
    wider = _checkpoint(tmp_path, "wide.ckpt", width=16)
    with pytest.raises(CheckpointError, match=r"written for model tiny_net\) does not fit the model:\n  wrong shape"
                                              r".*: conv_stem.weight \(16, 1, 3, 3\) vs \(8, 1, 3, 3\)"):
        validate.main(["--config", cfg_path, "--ckpt_path", wider])
    other_head = _checkpoint(tmp_path, "head.ckpt", num_classes=3)
    with pytest.raises(CheckpointError, match=r"classifier.weight \(3, 16\) vs \(10, 16\), classifier.bias"):
        validate.main(["--config", cfg_path, "--ckpt_path", other_head])


def test_missing_or_corrupt_checkpoint_file_is_named(tmp_path):
    cfg_path = write_config(tiny_config(tmp_path, model="ghostnet_050", small_input=True), tmp_path / "cfg.yaml")
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x00garbage" * 100)
    result = subprocess.run([sys.executable, "validate.py", "--config", cfg_path,
                             "--ckpt_path", str(tmp_path / "corrupt.ckpt")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"error: cannot read checkpoint file {tmp_path / 'corrupt.ckpt'}" in result.stderr
    with pytest.raises(CheckpointError, match=f"checkpoint file not found: {tmp_path / 'missing.ckpt'}"):
        validate.main(["--config", cfg_path, "--ckpt_path", str(tmp_path / "missing.ckpt")])


def test_unknown_model_names_the_key(tmp_path):
    cfg_path = write_config(tiny_config(tmp_path, model="ghostnet_10"), tmp_path / "cfg.yaml")
    with pytest.raises(ConfigError, match="config key 'model': unknown model 'ghostnet_10'; did you mean"):
        validate.main(["--config", cfg_path, "--ckpt_path", _checkpoint(tmp_path)])


def test_mindir_gives_the_checkpoints_report(tmp_path, capsys):
    """validate.py --mindir evaluates the exported file; its report equals the checkpoint's."""
    import export
    from src.models import create_model
    cfg = tiny_config(tmp_path, model="ghostnet_050", small_input=True, eval_batch_size=16,
                      output_dir=str(tmp_path / "eval"))
    cfg_path = write_config(cfg, tmp_path / "cfg.yaml")
    net = create_model("ghostnet_050", num_classes=10, in_channels=1, small_input=True)
    ckpt = str(tmp_path / "ghostnet.ckpt")
    save_checkpoint(ckpt, {p.name: p for p in net.get_parameters()}, {"model": "ghostnet_050"})
    mindir = str(tmp_path / "ghostnet.mindir")
    assert export.main(["--config", cfg_path, "--ckpt_path", ckpt, "--output", mindir]) == 0
    from_ckpt = validate.main(["--config", cfg_path, "--ckpt_path", ckpt])
    from_mindir = validate.main(["--config", cfg_path, "--mindir", mindir])
    assert f"loaded exported ghostnet_050 from {mindir}" in capsys.readouterr().out
    assert from_mindir["confusion_matrix"] == from_ckpt["confusion_matrix"]
    assert from_mindir["loss"] == pytest.approx(from_ckpt["loss"], abs=1e-5)
    with pytest.raises(ConfigError, match="exactly one of --ckpt_path"):
        validate.main(["--config", cfg_path, "--ckpt_path", ckpt, "--mindir", mindir])
