"""MindCV GhostNet checkpoints load here as they are and give MindCV's logits (skipped without the mindcv package).

MindCV's own models are built with random weights and random BN statistics, saved with mindspore.save_checkpoint,
and loaded through export's / predict's path (model_from_checkpoint), `--pretrained` (load_pretrained) and the
converter.
Inputs are 64 px: the smallest at which the last stages still see 2 x 2 maps, so that pooling is not the identity.
"""
import os

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
import numpy as np
import pytest

from scripts.convert_checkpoint import main as convert_main
from src.checkpoint import CheckpointError, load_pretrained, load_weights
from src.config import load_config
from src.configured_model import model_from_checkpoint
from src.models import create_model

mindcv = pytest.importorskip("mindcv")

GHOSTNETS = ("ghostnet_050", "ghostnet_100", "ghostnet_130")
TOLERANCE = 1e-5
MAPPED = "is in MindCV's layout: mapped 5 keys (blocks.9.features.{0,1}.* -> blocks.9.0.{conv,bn1}.*)"


def mindcv_ghostnet(name, seed, num_classes=1000):
    """MindCV's model in eval mode with random BN affine terms and statistics, so that eval-mode BN really matters.

    The statistics are those of a random batch, then perturbed: made up ones would let activations grow by orders
    of magnitude over the 16 blocks. The classifier is drawn from N(0, 0.01) as the zoo and the official code
    initialise it, which keeps logits near 1: float32 rounding then stays well below the 1e-5 tolerance (MindCV's
    He-uniform classifier gives logits up to ~15 and differences up to 1.5e-5, about 1e-6 of the logit scale).
    """
    ms.set_seed(seed)  # MindCV's initialisers
    net = mindcv.create_model(name, num_classes=num_classes)
    rng = np.random.default_rng(seed)
    bns = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    for bn in bns:  # running statistics := those of the next batch
        bn.bn_train = ops.BatchNorm(is_training=True, epsilon=bn.eps, momentum=1.0)
    net.set_train(True)(ms.Tensor(rng.standard_normal((8, 3, 64, 64)).astype(np.float32)))
    for bn in bns:
        for param, change in ((bn.moving_mean, lambda v: v + rng.normal(0.0, 0.1, v.shape)),
                              (bn.moving_variance, lambda v: v * rng.uniform(0.5, 2.0, v.shape)),
                              (bn.gamma, lambda v: rng.uniform(0.5, 1.5, v.shape)),
                              (bn.beta, lambda v: rng.normal(0.0, 0.1, v.shape))):
            param.set_data(ms.Tensor(change(param.asnumpy()).astype(np.float32)))
    net.classifier.weight.set_data(ms.Tensor(rng.normal(0.0, 0.01, net.classifier.weight.shape).astype(np.float32)))
    return net.set_train(False)


@pytest.fixture(scope="module")
def mindcv_checkpoints(tmp_path_factory):
    """name -> (checkpoint path, input batch, MindCV's logits)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    out = tmp_path_factory.mktemp("mindcv")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    saved = {}
    for seed, name in enumerate(GHOSTNETS):
        net = mindcv_ghostnet(name, seed)
        ms.save_checkpoint(net, str(out / f"{name}.ckpt"))
        saved[name] = (str(out / f"{name}.ckpt"), x, net(ms.Tensor(x)).asnumpy())
    return saved


def max_logit_difference(net, x, logits):
    return float(np.abs(net.set_train(False)(ms.Tensor(x)).asnumpy() - logits).max())


@pytest.mark.parametrize("name", GHOSTNETS)
def test_mindcv_checkpoint_gives_mindcv_logits(mindcv_checkpoints, name, capsys):
    path, x, logits = mindcv_checkpoints[name]
    net, kind, channels = model_from_checkpoint(load_config(overrides=dict(model=name)), path)  # export / predict
    assert (kind, channels, net.num_classes) == ("trained", 3, 1000)
    assert f"checkpoint {path} {MAPPED}" in capsys.readouterr().out
    diff = max_logit_difference(net, x, logits)
    print(f"{name}: max |logit difference| {diff:.3g} (logit scale {np.abs(logits).max():.3g})")
    assert diff <= TOLERANCE


def ours_from_mindcv(name):
    """Our parameter name -> MindCV's."""
    return name.replace("blocks.9.0.conv.", "blocks.9.features.0.").replace("blocks.9.0.bn1.", "blocks.9.features.1.")


def test_mindcv_pretrained_drops_the_classifier(mindcv_checkpoints, capsys):
    path = mindcv_checkpoints["ghostnet_050"][0]
    net = create_model("ghostnet_050", num_classes=10)
    fresh = net.classifier.weight.asnumpy()
    assert load_pretrained(net, path, "classifier") == ["classifier.weight", "classifier.bias"]
    assert MAPPED in capsys.readouterr().out
    saved = ms.load_checkpoint(path)
    for param in net.get_parameters():
        if not param.name.startswith("classifier."):
            assert np.array_equal(param.asnumpy(), saved[ours_from_mindcv(param.name)].asnumpy()), param.name
    assert np.array_equal(net.classifier.weight.asnumpy(), fresh)


def test_mindcv_training_checkpoint_skips_optimizer_state(tmp_path, capsys):
    """A checkpoint of MindCV's train network holds optimizer and loss-scale state (and EMA weights with ema)."""
    from mindcv.loss import create_loss
    from mindcv.optim import create_optimizer
    from mindcv.utils.trainer_factory import create_trainer

    ms.set_context(mode=ms.PYNATIVE_MODE)
    for opt, ema in (("adamw", False), ("momentum", True)):
        net = mindcv.create_model("ghostnet_050", num_classes=10)
        optimizer = create_optimizer(net.trainable_params(), opt=opt, lr=0.1, weight_decay=1e-5)
        trainer = create_trainer(net, create_loss("CE"), optimizer, {"acc"}, "O0", None, "fixed", 1.0, ema=ema)
        path = str(tmp_path / f"{opt}.ckpt")
        ms.save_checkpoint(trainer.train_network, path)
        saved = ms.load_checkpoint(path)
        ours = create_model("ghostnet_050", num_classes=10)
        assert load_weights(ours, path) == ("ema" if ema else "trained")
        printed = capsys.readouterr().out
        assert MAPPED in printed
        if not ema:  # the EMA weights are a namespace of their own: optimizer keys are never looked at
            assert "optimizer state besides the weights: ignored 548 keys (adam_m.* (272), adam_v.* (272)" in printed
        prefix = "ema." if ema else ""
        for param in ours.get_parameters():
            assert np.array_equal(param.asnumpy(), saved[prefix + ours_from_mindcv(param.name)].asnumpy()), param.name


def test_converter_writes_mindcv_weights_in_our_names(mindcv_checkpoints, tmp_path, capsys):
    path, x, logits = mindcv_checkpoints["ghostnet_100"]
    convert_main(["--model", "ghostnet_100", "--input", path, "--output", str(tmp_path / "ours.ckpt")])
    assert MAPPED in capsys.readouterr().out
    net = create_model("ghostnet_100")
    assert ms.load_param_into_net(net, ms.load_checkpoint(str(tmp_path / "ours.ckpt")), strict_load=True) == ([], [])
    assert max_logit_difference(net, x, logits) <= TOLERANCE
    with pytest.raises(CheckpointError, match="not in the zoo layout but in the mindcv one"):
        convert_main(["--model", "ghostnet_100", "--input", path, "--output", str(tmp_path / "x.ckpt"),
                      "--format", "zoo"])


def test_mindcv_checkpoint_of_another_width_names_keys(mindcv_checkpoints):
    with pytest.raises(CheckpointError, match=r"wrong shape.*conv_stem\.weight \(8, 3, 3, 3\) vs \(16, 3, 3, 3\)"):
        load_weights(create_model("ghostnet_100"), mindcv_checkpoints["ghostnet_050"][0])


def test_mindcv_checkpoint_validates_and_exports_with_the_imagenet_recipe(mindcv_checkpoints, tmp_path, capsys):
    """The user's commands as written, on this CPU-only machine with the ImageNet recipe: export.py writes a MINDIR
    that gives MindCV's logits, and validate.py evaluates the checkpoint on a folder of the 1000 classes."""
    import export
    import validate
    from PIL import Image
    from src.deploy import load_exported

    path, x, logits = mindcv_checkpoints["ghostnet_100"]
    recipe = "configs/ghostnet/ghostnet_100_imagenet.yaml"
    mindir = tmp_path / "ghostnet_100.mindir"
    assert export.main(["--config", recipe, "--ckpt_path", path, "--image_size", "64", "--output", str(mindir)]) == 0
    assert float(np.abs(load_exported(str(mindir))(x).asnumpy() - logits).max()) <= TOLERANCE

    rng = np.random.default_rng(0)
    for k in range(1000):
        os.makedirs(tmp_path / "data" / "train" / f"n{k:04d}")
        os.makedirs(tmp_path / "data" / "val" / f"n{k:04d}")
        image = Image.fromarray(rng.integers(0, 256, (80, 72, 3), np.uint8))
        image.save(tmp_path / "data" / "val" / f"n{k:04d}" / "a.jpg")
    report = validate.main(["--config", recipe, "--ckpt_path", path, "--data_dir", str(tmp_path / "data"),
                            "--image_size", "64", "--batch_size", "100", "--num_workers", "2",
                            "--output_dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert report["num_samples"] == 1000 and f"checkpoint {path} {MAPPED}" in out
    assert "confusion matrix: 1000 x 1000, in the JSON report and its PNG" in out
