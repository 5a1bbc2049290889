"""Knowledge distillation: the loss against numpy, a frozen teacher (unchanged, outside the optimizer and the
checkpoints), GhostNetV3 distilled through train.py then exported, a MINDIR teacher, and config errors.

Teachers are tiny_net (tests/engine_fixtures.py) checkpoints with random BN statistics, so a teacher that ran in
training mode (batch statistics) or updated its moving averages would give other logits and weights.
"""
import json
import re

import numpy as np
import pytest
import mindspore
import mindspore.ops as ops

import train
from export import main as export_main
from src.checkpoint import STATE_PREFIX, load_weights, read_checkpoint
from src.config import ConfigError, load_config
from src.deploy import load_exported
from src.engine.distill import build_teacher
from src.engine.loss import DistillationLoss, SoftTargetCrossEntropy
from src.engine.optim import create_optimizer
from src.engine.run_state import TrainingState
from src.engine.train_step import TrainStep
from src.models import create_model
from tests.data_fixtures import make_idx_dataset
from tests.engine_fixtures import TinyNet, tiny_config, write_config
from tests.test_export import random_bn_statistics

# GhostNetV3 student of the end-to-end test: 0.25x of the 1.0x channels, 32 px Fashion-MNIST-format images,
# PyNative (compiling its train step takes minutes here; the other train.py runs below compile theirs).
STUDENT = dict(model="ghostnetv3_050", width=0.25, small_input=True, image_size=32, mode="pynative")


def write_teacher(path, num_classes=10, in_channels=1, seed=0):
    """A tiny_net checkpoint with random weights and BN statistics; returns the network (eval mode)."""
    net = random_bn_statistics(TinyNet(num_classes, in_channels), seed)
    mindspore.save_checkpoint(net, str(path))
    return net


def images(n, channels=1, size=16, seed=1):
    return np.random.default_rng(seed).standard_normal((n, channels, size, size)).astype(np.float32)


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# --- the loss ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.0, 1.0, 0.3])
def test_loss_is_weighted_cross_entropy_plus_scaled_kl(alpha):
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(0, 2, (4, 5)), rng.normal(0, 2, (4, 5))
    target = np.eye(5)[[0, 3, 1, 4]]
    smoothing, temperature = 0.1, 2.0
    smoothed = target * (1 - smoothing) + smoothing / 5
    cross_entropy = np.mean(np.sum(-smoothed * log_softmax(student), -1))
    p_teacher = np.exp(log_softmax(teacher / temperature))
    kl = np.mean(np.sum(p_teacher * (np.log(p_teacher) - log_softmax(student / temperature)), -1))
    expected = (1 - alpha) * cross_entropy + alpha * temperature ** 2 * kl

    loss_fn = DistillationLoss(smoothing, temperature, alpha)
    tensors = [mindspore.Tensor(a.astype(np.float32)) for a in (student, target, teacher)]
    assert float(loss_fn(*tensors).asnumpy()) == pytest.approx(expected, rel=1e-5)
    if alpha == 0.0:  # no teacher term: exactly the plain loss
        plain = SoftTargetCrossEntropy(smoothing)(*tensors[:2])
        assert float(loss_fn(*tensors).asnumpy()) == pytest.approx(float(plain.asnumpy()), rel=1e-6)
    if alpha == 1.0:  # a student that agrees with its teacher has nothing left to learn from it
        assert float(loss_fn(tensors[2], tensors[1], tensors[2]).asnumpy()) == pytest.approx(0.0, abs=1e-6)
    # The teacher's logits are constants: the loss has no gradient with respect to them.
    teacher_grad = ops.grad(loss_fn, grad_position=2)(*tensors)
    assert not np.any(teacher_grad.asnumpy())


# --- the teacher stays frozen --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_teacher_is_unchanged_and_outside_the_optimizer_and_checkpoints(tmp_path, mode):
    mindspore.set_context(mode=mindspore.GRAPH_MODE if mode == "graph" else mindspore.PYNATIVE_MODE)
    reference = write_teacher(tmp_path / "teacher.ckpt")
    cfg = tiny_config(tmp_path, teacher_model="tiny_net", teacher_ckpt=str(tmp_path / "teacher.ckpt"),
                      kd_temperature=2.0, kd_weight=0.7)
    teacher = build_teacher(cfg, num_classes=10, in_channels=1)
    before = {p.name: p.asnumpy().copy() for p in teacher.network.get_parameters()}
    x = images(8)
    np.testing.assert_allclose(teacher(mindspore.Tensor(x)).asnumpy(), reference(mindspore.Tensor(x)).asnumpy(),
                               atol=1e-6)  # inference mode: the BN moving statistics, not the batch's

    student = TinyNet(10, 1)
    optimizer = create_optimizer(cfg, student.trainable_params(), np.full(10, 0.05, np.float32))
    step = TrainStep(student, DistillationLoss(0.1, 2.0, 0.7), optimizer)
    step.set_train(True)
    labels = mindspore.Tensor(np.eye(10, dtype=np.float32)[np.arange(8) % 10])
    student_before = student.conv_stem.weight.asnumpy().copy()
    for seed in range(3):
        batch = mindspore.Tensor(images(8, seed=seed))
        loss = step(batch, labels, teacher(batch))[0]
        assert np.isfinite(loss.asnumpy())

    assert not np.allclose(student.conv_stem.weight.asnumpy(), student_before)
    for param in teacher.network.get_parameters():
        np.testing.assert_array_equal(param.asnumpy(), before[param.name], err_msg=param.name)
        assert not param.requires_grad
    teacher_ids = {id(p) for p in teacher.network.get_parameters()}
    assert not teacher_ids & {id(p) for p in optimizer.parameters}
    assert not teacher_ids & {id(p) for p in step.get_parameters()}
    assert not teacher_ids & {id(p) for p in TrainingState(student, optimizer).tensors.values()}


# --- end to end: GhostNetV3 distilled by train.py, re-parameterised and exported --------------------------------

def test_ghostnetv3_distilled_by_train_py_exports_to_a_matching_mindir(tmp_path, capsys):
    # 4 steps: the BN moving statistics (momentum 0.1) have moved a third of the way to the activations' own, so
    # folding changes every conv; the logits' scale then depends on the steps, and the file is compared with the
    # checkpoint relative to it, as export.py does.
    data_dir = make_idx_dataset(str(tmp_path / "idx32"), n_train=32, n_test=16, size=32)
    write_teacher(tmp_path / "teacher.ckpt")  # tiny_net is indifferent to the image size
    cfg = tiny_config(tmp_path, **STUDENT, data_dir=data_dir, epochs=1, max_steps_per_epoch=4, lr=1e-3, ema=True,
                      ema_decay=0.9, teacher_model="tiny_net", teacher_ckpt=str(tmp_path / "teacher.ckpt"),
                      kd_temperature=4.0, kd_weight=0.9)
    train.main(["--config", write_config(cfg, tmp_path / "cfg.yaml")])
    out = capsys.readouterr().out
    assert f"distilling from tiny_net (trained weights of {tmp_path / 'teacher.ckpt'}): temperature 4, " \
           "kd_weight (alpha) 0.9" in out
    run = tmp_path / "run"

    # The checkpoints hold the student (its weights, EMA and optimizer state) and nothing of the teacher.
    student = create_model("ghostnetv3_050", num_classes=10, in_channels=1, small_input=True, width=0.25)
    shapes = {p.name: tuple(p.shape) for p in student.get_parameters()}
    for name, with_ema in (("epoch_0001.ckpt", True), ("best.ckpt", False)):  # best: the EMA weights only
        tensors, _ = read_checkpoint(str(run / name))
        model = {k: tuple(v.shape) for k, v in tensors.items() if not k.startswith((STATE_PREFIX, "ema."))}
        ema = {k[len("ema."):]: tuple(v.shape) for k, v in tensors.items() if k.startswith("ema.")}
        assert model == shapes and ema == (shapes if with_ema else {}), name

    ckpt = str(run / "epoch_0001.ckpt")
    assert export_main(["--config", str(run / "config.yaml"), "--ckpt_path", ckpt]) == 0
    assert "reloaded MINDIR" in capsys.readouterr().out
    load_weights(student, ckpt)  # training form, EMA weights (what export.py took)
    student.set_train(False)
    x = images(3, size=32)
    exported = load_exported(str(run / "epoch_0001.mindir"))(x).asnumpy()
    expected = student(mindspore.Tensor(x)).asnumpy()
    scale = np.abs(expected).max()
    assert np.abs(exported - expected).max() <= 1e-5 * max(1.0, scale), (np.abs(exported - expected).max(), scale)


# --- a MINDIR teacher ---------------------------------------------------------------------------------------------

def test_mindir_teacher_trains_as_its_checkpoint_does(tmp_path, capsys):
    teacher = write_teacher(tmp_path / "teacher.ckpt", seed=3)
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    dynamic_batch = mindspore.Tensor(shape=[None, 1, 16, 16], dtype=mindspore.float32)
    mindspore.export(teacher, dynamic_batch, file_name=str(tmp_path / "teacher"), file_format="MINDIR")
    common = dict(epochs=1, max_steps_per_epoch=4, kd_temperature=3.0, kd_weight=0.6, val_interval=0)
    from_ckpt = tiny_config(tmp_path, output_dir=str(tmp_path / "ckpt"), teacher_model="tiny_net",
                            teacher_ckpt=str(tmp_path / "teacher.ckpt"), **common)
    from_mindir = tiny_config(tmp_path, output_dir=str(tmp_path / "mindir"),
                              teacher_mindir=str(tmp_path / "teacher.mindir"), **common)
    train.main(["--config", write_config(from_ckpt, tmp_path / "ckpt.yaml")])
    train.main(["--config", write_config(from_mindir, tmp_path / "mindir.yaml")])
    out = capsys.readouterr().out
    assert f"distilling from MINDIR {tmp_path / 'teacher.mindir'}: temperature 3, kd_weight (alpha) 0.6" in out

    losses = {}
    for run in ("ckpt", "mindir"):
        losses[run] = [r["loss"] for r in json.loads((tmp_path / run / "metrics.json").read_text())["steps"]]
    assert len(losses["ckpt"]) == 1  # the 4 steps in one progress line
    assert losses["mindir"] == pytest.approx(losses["ckpt"], abs=1e-5)


# --- config errors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (dict(kd_temperature=0), "config key 'kd_temperature' must be greater than 0, got 0.0"),
    (dict(kd_weight=1.5), "config key 'kd_weight' must be in [0, 1], got 1.5"),
    (dict(teacher_ckpt="t.ckpt"), "config key 'teacher_ckpt' (t.ckpt) needs 'teacher_model'"),
    (dict(teacher_model="tiny_net"), "config key 'teacher_model' (tiny_net) needs 'teacher_ckpt'"),
    (dict(teacher_model="tiny_net", teacher_ckpt="t.ckpt", teacher_mindir="t.mindir"),
     "config keys 'teacher_mindir' and 'teacher_model' / 'teacher_ckpt' both name a teacher"),
    (dict(kd_weight=0.7), "config key 'kd_weight' (0.7) is set but no teacher is"),
    (dict(kd_temperature=4.0), "config key 'kd_temperature' (4.0) is set but no teacher is"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_teacher_errors_name_the_problem(tmp_path):
    write_teacher(tmp_path / "five.ckpt", num_classes=5)
    cfg = tiny_config(tmp_path, teacher_model="tiny_net", teacher_ckpt=str(tmp_path / "five.ckpt"))
    with pytest.raises(ConfigError, match=re.escape(
            f"config key 'teacher_ckpt': the teacher in {tmp_path / 'five.ckpt'} scores 5 classes but the student "
            "has 10")):
        build_teacher(cfg, num_classes=10, in_channels=1)
    cfg = tiny_config(tmp_path, teacher_model="ghostnet_1000", teacher_ckpt=str(tmp_path / "five.ckpt"))
    with pytest.raises(ConfigError, match="config key 'teacher_model': .*ghostnet_1000"):
        build_teacher(cfg, num_classes=10, in_channels=1)
    cfg = tiny_config(tmp_path, teacher_mindir=str(tmp_path / "missing.mindir"))
    with pytest.raises(ConfigError, match="config key 'teacher_mindir': exported model not found: .*missing.mindir"):
        build_teacher(cfg, num_classes=10, in_channels=1)
