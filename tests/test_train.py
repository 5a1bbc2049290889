"""train.py end to end on generated data: the run directory, progress lines, exact resume, fine-tuning from a
checkpoint with another head, and command-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import train
from src.checkpoint import read_checkpoint, save_checkpoint
from src.data.readers import FASHION_MNIST_CLASSES
from src.data import DatasetError
from src.engine.trainer import Trainer
from src.models import create_model
from tests.data_fixtures import make_image_folder
from tests.engine_fixtures import TinyNet, tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_training_writes_the_run_and_lowers_the_loss(tmp_path, capsys, mode):
    cfg = tiny_config(tmp_path, mode=mode, epochs=3, ema=True, ema_decay=0.9, keep_checkpoints=2)
    train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    out = capsys.readouterr().out
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == [".lock", "accuracy_curve.png", "best.ckpt", "config.yaml", "epoch_0002.ckpt",
                                       "epoch_0003.ckpt", "loss_curve.png", "metrics.csv", "metrics.json"]
    assert "epoch 1/3  step 4/12  loss " in out and " img/s  left: epoch 0:" in out
    assert "epoch 3/3 done: train loss" in out and "val (EMA) loss" in out
    history = json.loads((run / "metrics.json").read_text())
    epochs = history["epochs"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3] and len(history["steps"]) == 9
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert all(0 <= r["val_top1"] <= r["val_top5"] <= 1 for r in epochs)
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss,train_acc,val_loss")
    best_epoch = max(epochs, key=lambda r: r["val_top1"])["epoch"]
    assert read_checkpoint(str(run / "best.ckpt"))[1] == {"epoch": best_epoch, "val_top1": pytest.approx(
        max(r["val_top1"] for r in epochs)), "model": "tiny_net", "class_names": json.dumps(FASHION_MNIST_CLASSES)}


def test_every_checkpoint_names_the_classes_of_the_training_split(tmp_path):
    """validate.py and predict.py label the outputs from the checkpoint alone: best.ckpt, epoch and step
    checkpoints all carry the training split's class list."""
    data_dir = make_image_folder(str(tmp_path / "folder"), classes=3)
    for split in ("train", "val"):
        for k, name in enumerate(["cat", "dog", "owl"]):
            os.rename(os.path.join(data_dir, split, f"class_{k}"), os.path.join(data_dir, split, name))
    cfg = tiny_config(tmp_path, dataset="folder", data_dir=data_dir, batch_size=4, epochs=1, max_steps_per_epoch=2,
                      ckpt_interval_steps=1)
    train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    run = tmp_path / "run"
    for name in ("best.ckpt", "epoch_0001.ckpt", "epoch_0000_step_0001.ckpt"):
        meta = read_checkpoint(str(run / name))[1]
        assert json.loads(meta["class_names"]) == ["cat", "dog", "owl"], name


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    # Augmentation (random resized crop), AdamW moments, warm-up + cosine LR, EMA and loss scaling all carry state.
    common = dict(epochs=3, ema=True, ema_decay=0.9, loss_scale="dynamic", scale=[0.5, 1.0])
    whole = tiny_config(tmp_path, output_dir=str(tmp_path / "whole"), **common)
    train.main(["--config", write_config(whole, tmp_path / "whole.yaml")])

    parts = tiny_config(tmp_path, output_dir=str(tmp_path / "parts"), **common)
    config = write_config(parts, tmp_path / "parts.yaml")
    train_epoch = Trainer._train_epoch

    def stop_at_the_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", stop_at_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train.main(["--config", config])
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path / "parts"))[:3] == [".lock", "best.ckpt", "config.yaml"]
    train.main(["--config", config, "--resume", "auto"])

    expected, _ = read_checkpoint(str(tmp_path / "whole" / "epoch_0003.ckpt"))
    resumed, meta = read_checkpoint(str(tmp_path / "parts" / "epoch_0003.ckpt"))
    assert meta["epoch"] == 3 and expected.keys() == resumed.keys()
    for key in expected:
        np.testing.assert_allclose(resumed[key].asnumpy(), expected[key].asnumpy(), atol=1e-6, err_msg=key)
    whole_history = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    parts_history = json.loads((tmp_path / "parts" / "metrics.json").read_text())
    assert [r["epoch"] for r in parts_history["epochs"]] == [1, 2, 3]
    assert [r["train_loss"] for r in parts_history["epochs"]] == pytest.approx(
        [r["train_loss"] for r in whole_history["epochs"]], abs=1e-6)


def test_pretrained_with_another_head_lists_the_dropped_keys(tmp_path, capsys):
    source = TinyNet(num_classes=10, in_channels=3)
    ckpt = str(tmp_path / "ten_classes.ckpt")
    save_checkpoint(ckpt, {p.name: p for p in source.get_parameters()})
    data_dir = make_image_folder(str(tmp_path / "folder"), classes=3)
    cfg = tiny_config(tmp_path, dataset="folder", data_dir=data_dir, batch_size=4, epochs=1, pretrained=ckpt,
                      max_steps_per_epoch=2, lr=1e-9, min_lr=0.0, warmup_epochs=0.0)
    train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    out = capsys.readouterr().out
    assert f"fine-tuning from {ckpt}; re-initialised classifier, dropped checkpoint keys: " \
           "classifier.weight, classifier.bias" in out
    weights, _ = read_checkpoint(str(tmp_path / "run" / "epoch_0001.ckpt"))
    assert weights["classifier.weight"].shape == (3, 16)
    np.testing.assert_allclose(weights["conv_stem.weight"].asnumpy(), source.conv_stem.weight.asnumpy(), atol=1e-6)


def test_own_images_with_the_pets_recipe(tmp_path, capsys):
    """The README's own-images command: the Pets recipe with --dataset folder trains on DIR/train and validates on
    DIR/val (the dataset's splits, not the Pets ones), fine-tuning a checkpoint with another head."""
    data_dir = make_image_folder(str(tmp_path / "images"), per_class={"train": 2, "val": 1}, classes=2, size=(32, 32))
    pretrained = str(tmp_path / "imagenet_like.ckpt")
    save_checkpoint(pretrained, {p.name: p for p in create_model("ghostnet_050", num_classes=5).get_parameters()})
    pets = os.path.join(REPO, "configs", "ghostnet", "ghostnet_100_pets.yaml")
    common = ["--config", pets, "--dataset", "folder", "--data_dir", data_dir, "--num_classes", "2",
              "--pretrained", pretrained, "--model", "ghostnet_050", "--image_size", "32", "--epochs", "1",
              "--batch_size", "2", "--max_steps_per_epoch", "1", "--num_workers", "1", "--mode", "pynative"]
    train.main([*common, "--output_dir", str(tmp_path / "run")])
    placed, summary = capsys.readouterr().out.splitlines()[:2]
    assert placed.startswith("rank 0 of 1 (local 0 of 1 on this host): CPU (no device id on CPU), 1 data worker")
    assert "2 classes" in summary and "train 4 images (train), val 2 (val)" in summary and "CPU" in summary
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "train_split: train\nval_split: val\n" in saved and "device_target: CPU\n" in saved
    os.rename(os.path.join(data_dir, "val"), os.path.join(data_dir, "holdout"))
    with pytest.raises(DatasetError, match=r"split folder .*val not found \(folders in .*: \['holdout', 'train'\]\); "
                                           r"set --val_split$"):
        train.main([*common, "--output_dir", str(tmp_path / "run2")])


def test_command_line_errors_name_the_key(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "--batch_size", "0", "--output_dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "error: config key 'batch_size' must be at least 1, got 0" in result.stderr
    result = subprocess.run([sys.executable, "train.py", "--epoch", "3"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert "unknown config key 'epoch' on the command line (did you mean 'epochs'?)" in result.stderr


def test_a_run_lists_the_training_folder_once(tmp_path, monkeypatch, capsys):
    """Three epochs over an image folder: the training split's folders are listed once per run (once per rank), not
    once per epoch; each epoch still reshuffles (the epochs' batches differ)."""
    data_dir = make_image_folder(str(tmp_path / "images"), per_class={"train": 4, "val": 1}, classes=2, size=(16, 16))
    train_root = os.path.join(data_dir, "train")
    listed = []
    scandir = os.scandir

    def counting(path="."):
        listed.append(os.path.relpath(str(path), train_root))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    batches = []
    real_step = Trainer._step

    def recording(self, images, labels):
        batches.append(labels.asnumpy().argmax(axis=1).tolist())
        return real_step(self, images, labels)

    monkeypatch.setattr(Trainer, "_step", recording)
    cfg = tiny_config(tmp_path, dataset="folder", data_dir=data_dir, train_split="train", val_split="val",
                      epochs=3, batch_size=4, mode="pynative", log_interval=1)
    train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    assert "epoch 3/3 done" in capsys.readouterr().out
    in_train = sorted(p for p in listed if not p.startswith(".."))
    assert in_train == [".", "class_0", "class_1"]  # before: three times each
    epochs = [batches[0:2], batches[2:4], batches[4:6]]
    assert len(batches) == 6 and epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]
