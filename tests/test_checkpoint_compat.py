"""Checkpoints written before the models became plain MindSpore (and the CPU kernels a separate pass) still load,
predict as they did, and resume.

tests/data/checkpoint_before_refactor/ was written by the code of commit 693527f: `train.py --config
configs/ghostnet/ghostnet_100_fashion_mnist.yaml --model ghostnet_050 --width 0.1 --epochs 1 --max_steps_per_epoch 40
--batch_size 32 --ema true --ema_decay 0.9` (config.yaml beside it), and best_logits.npy holds that code's eval
logits of best.ckpt on input.npy (PyNative, its custom CPU kernels in the network).
"""
import os

import mindspore as ms
import numpy as np
import pytest

import train
from src.checkpoint import load_weights, read_checkpoint
from src.config import load_config
from src.configured_model import Sizes, for_this_device, model_for_data
from src.device import setup_context
from tests.data_fixtures import make_idx_dataset

OLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "checkpoint_before_refactor")


@pytest.mark.parametrize("cpu_kernels", ["off", "auto"])
def test_old_checkpoint_predicts_as_before(cpu_kernels):
    """The plain network and its CPU form both give the old code's logits."""
    cfg = load_config(os.path.join(OLD, "config.yaml"), {"mode": "pynative", "cpu_kernels": cpu_kernels})
    setup_context(cfg)
    net = for_this_device(model_for_data(cfg, Sizes(10, 1)), cfg)
    assert load_weights(net, os.path.join(OLD, "best.ckpt")) == "trained"
    net.set_train(False)
    logits = net(ms.Tensor(np.load(os.path.join(OLD, "input.npy")))).asnumpy()
    expected = np.load(os.path.join(OLD, "best_logits.npy"))
    assert np.abs(expected).max() > 0.5 and np.ptp(expected, axis=0).max() > 0.5  # a network that tells inputs apart
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


def test_old_training_checkpoint_resumes(tmp_path, capsys):
    """Every training-state tensor of the old epoch checkpoint (weights, EMA, AdamW moments) is restored and the run
    continues to its second epoch."""
    # the old run's 40 steps of 32 images per epoch: the restored optimizer step indexes this run's LR schedule
    data = make_idx_dataset(str(tmp_path / "fashion"), n_train=40 * 32, n_test=16, size=28)
    run = tmp_path / "run"
    train.main(["--config", os.path.join(OLD, "config.yaml"), "--data_dir", data, "--output_dir", str(run),
                "--epochs", "2", "--resume", os.path.join(OLD, "epoch_0001.ckpt")])
    out = capsys.readouterr().out
    assert "resumed from" in out and "1 of 2 epochs done" in out
    tensors, meta = read_checkpoint(str(run / "epoch_0002.ckpt"))
    old_tensors, _ = read_checkpoint(os.path.join(OLD, "epoch_0001.ckpt"))
    assert meta["epoch"] == 2 and set(tensors) == set(old_tensors)
