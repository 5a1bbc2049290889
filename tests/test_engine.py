"""Engine pieces: LR schedules, parameter groups, loss, EMA, the compiled train step (graph and PyNative),
loss scaling, clipping and checkpoints."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from src.checkpoint import CheckpointError, load_pretrained, load_weights, read_checkpoint, save_checkpoint
from src.config import CHOICES, Config
from src.device import setup_context
from src.engine.run_state import RunCheckpoints, TrainingState
from src.engine.ema import ModelEMA
from src.engine.loss import SoftTargetCrossEntropy
from src.engine.lr_schedule import build_lr_schedule
from src.engine.optim import create_optimizer, parameter_groups
from src.engine.progress import ProgressReport, ProgressWindow
from src.engine.train_step import TrainStep, create_loss_scaler, loss_scaler_state, mixed_precision
from src.engine import ema as ema_module
from src.kernels import kernels_usable
from tests.engine_fixtures import TinyNet


@pytest.fixture(params=["graph", "pynative"])
def mode(request):
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    return request.param


def _batch(n=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = (rng.normal(size=(n, 1, 8, 8)) + labels[:, None, None, None]).astype(np.float32)
    return Tensor(images), Tensor(np.eye(classes, dtype=np.float32)[labels])


def _step(net, cfg, steps=10, ema=None):
    optimizer = create_optimizer(cfg, net.trainable_params(), build_lr_schedule(cfg, steps))
    scaler = create_loss_scaler(cfg)
    step = TrainStep(net, SoftTargetCrossEntropy(cfg.label_smoothing), optimizer, ema=ema,
                     clip_grad_norm=cfg.clip_grad_norm, loss_scaler=scaler)
    step.set_train()
    return step, optimizer, scaler


# --- LR schedules --------------------------------------------------------------------------------------------------

def test_warmup_then_cosine_to_min_lr():
    lr = build_lr_schedule(Config(epochs=10, lr=0.1, warmup_epochs=2, warmup_lr=0.01, min_lr=1e-4), 5)
    assert lr.shape == (50,) and lr.dtype == np.float32
    np.testing.assert_allclose(lr[:10], np.linspace(0.01, 0.1, 11)[:10], rtol=1e-6)
    assert lr[10] == pytest.approx(0.1)
    cosine = lambda progress: 1e-4 + 0.5 * (0.1 - 1e-4) * (1 + np.cos(np.pi * progress))  # noqa: E731
    assert lr[30] == pytest.approx(cosine(0.5), rel=1e-5)
    assert lr[-1] == pytest.approx(cosine(39 / 40), rel=1e-5) and np.all(np.diff(lr[10:]) < 0)


def test_step_exponential_and_constant():
    cfg = dict(epochs=6, lr=1.0, decay_epochs=2, decay_rate=0.5, min_lr=0.2)
    step = build_lr_schedule(Config(scheduler="step", **cfg), 2)
    np.testing.assert_allclose(step, [1, 1, 1, 1, .5, .5, .5, .5, .25, .25, .25, .25])
    expo = build_lr_schedule(Config(scheduler="exponential", **cfg), 2)
    np.testing.assert_allclose(expo, np.maximum(0.2, 0.5 ** (np.arange(12) / 2 / 2)), rtol=1e-6)
    assert np.all(build_lr_schedule(Config(scheduler="constant", **cfg), 2) == 1.0)


# --- optimizer, loss -------------------------------------------------------------------------------------------------

def test_no_weight_decay_on_bn_and_bias():
    net = TinyNet()
    groups = parameter_groups(net.trainable_params(), 0.05)
    decayed = {p.name for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert decayed == {"conv_stem.weight", "conv_head.weight", "classifier.weight"}
    assert [p.name for p in groups[-1]["order_params"]] == [p.name for p in net.trainable_params()]
    assert len(parameter_groups(net.trainable_params(), 0.05, filter_bias_and_bn=False)[0]["params"]) == 9


def test_soft_target_cross_entropy_matches_numpy():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
    target = np.array([[1, 0, 0], [0.3, 0, 0.7]], np.float32)
    smoothed = target * 0.9 + 0.1 / 3
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(smoothed * log_probs).sum(1).mean()
    loss = SoftTargetCrossEntropy(0.1)(Tensor(logits), Tensor(target))
    assert float(loss.asnumpy()) == pytest.approx(expected, rel=1e-5)


# --- train step ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    dict(optimizer="sgd", lr=0.1, nesterov=True),
    dict(optimizer="rmsprop", lr=0.01),
    dict(optimizer="adam", lr=0.01),
    dict(optimizer="adamw", lr=0.01, clip_grad_norm=1.0, loss_scale="dynamic"),
], ids=lambda o: o["optimizer"])
def test_train_step_lowers_the_loss(mode, options):
    ms.set_seed(0)
    net = TinyNet(num_classes=4, width=8)
    step, optimizer, _ = _step(net, Config(epochs=1, weight_decay=1e-4, **options), steps=12)
    images, labels = _batch()
    losses = [float(step(images, labels)[0].asnumpy()) for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0], losses
    assert int(optimizer.global_step.asnumpy()[0]) == 12


@pytest.mark.parametrize("amp_level", ["O2", "O3"])
def test_mixed_precision_trains_on_cpu_with_a_warning(amp_level):
    with pytest.warns(UserWarning, match=f"amp_level {amp_level} on CPU"):
        setup_context(Config(amp_level=amp_level, mode="graph"), training=True)
    net = mixed_precision(TinyNet(num_classes=4), amp_level)
    step, _, scaler = _step(net, Config(optimizer="adam", lr=0.01, epochs=1, loss_scale="dynamic"))
    images, labels = _batch()
    losses = [float(step(images, labels)[0].asnumpy()) for _ in range(10)]
    assert losses[-1] < 0.8 * losses[0], losses
    assert float(scaler.scale_value.asnumpy()) == 1024.0  # no overflow in float16 here


OPTIMIZERS = {  # config name -> (MindSpore class, {attribute: the config value it must hold})
    "sgd": (ms.nn.SGD, dict(momentum=0.7, nesterov=True)),
    "rmsprop": (ms.nn.RMSProp, dict(momentum=0.7, decay=0.85, epsilon=1e-3)),
    "adam": (ms.nn.Adam, dict(beta1=0.8, beta2=0.95, eps=1e-3)),
    "adamw": (ms.nn.AdamWeightDecay, dict(beta1=0.8, beta2=0.95, eps=1e-3)),
}


def _value(attribute):
    return attribute if isinstance(attribute, (bool, float)) else float(np.asarray(attribute.asnumpy()).item())


def test_engine_builds_every_configured_optimizer():
    """Each configured optimizer is MindSpore's class for it, holding the schedule and every hyperparameter."""
    assert sorted(OPTIMIZERS) == sorted(CHOICES["optimizer"])
    schedule = np.array([0.3, 0.2, 0.1], np.float32)
    for name, (cls, expected) in OPTIMIZERS.items():
        cfg = Config(optimizer=name, epochs=1, momentum=0.7, nesterov=True, rmsprop_decay=0.85, opt_eps=1e-3,
                     betas=[0.8, 0.95], weight_decay=0.01)
        params = TinyNet().trainable_params()
        optimizer = create_optimizer(cfg, params, schedule)
        assert type(optimizer) is cls, name
        np.testing.assert_array_equal(optimizer.learning_rate.learning_rate.asnumpy(), schedule)
        for key, value in expected.items():
            assert _value(getattr(optimizer, key)) == pytest.approx(value), (name, key)
        decay = {p.name: float(wd.asnumpy()) for p, wd in zip(optimizer.parameters, optimizer.weight_decay)}
        assert decay == {p.name: pytest.approx(0.01 if p.ndim > 1 else 0.0) for p in params}, name


def test_graph_and_pynative_give_the_same_steps():
    results = []
    for mode_flag in (ms.GRAPH_MODE, ms.PYNATIVE_MODE):
        ms.set_context(mode=mode_flag)
        ms.set_seed(0)
        net = TinyNet(num_classes=4)
        step, _, _ = _step(net, Config(optimizer="sgd", lr=0.05, epochs=1), steps=3)
        images, labels = _batch()
        results.append([float(step(images, labels)[0].asnumpy()) for _ in range(3)])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)


def test_overflow_skips_the_update_and_lowers_the_scale(mode):
    net = TinyNet(num_classes=4)
    step, _, scaler = _step(net, Config(optimizer="sgd", lr=0.1, epochs=1, loss_scale="dynamic",
                                        loss_scale_value=1024.0))
    images, labels = _batch()
    overflowing = images.asnumpy().copy()
    overflowing[0, 0, 0, 0] = np.inf
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    step(Tensor(overflowing), labels)
    assert all(np.array_equal(b, p.asnumpy()) for b, p in zip(before, net.trainable_params()))
    assert float(scaler.scale_value.asnumpy()) == 512.0
    step(images, labels)
    assert not np.array_equal(before[0], net.trainable_params()[0].asnumpy())
    assert [p.name for p in loss_scaler_state(scaler)] == ["scale_value", "counter"]


def test_gradient_clipping_bounds_the_update():
    net = TinyNet(num_classes=4)
    step, _, _ = _step(net, Config(optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, epochs=1,
                                   clip_grad_norm=1e-3))
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    step(*_batch())
    change = np.sqrt(sum(((p.asnumpy() - b) ** 2).sum() for b, p in zip(before, net.trainable_params())))
    assert 0 < change <= 1e-3 * (1 + 1e-5)


@pytest.mark.parametrize("fused", [True, False], ids=["fused_kernel", "per_tensor"])
@pytest.mark.parametrize("loss_scale", ["none", "dynamic"])
def test_ema_follows_the_updated_weights_with_warmup_decay(mode, loss_scale, fused, monkeypatch):
    if fused and not kernels_usable():
        pytest.skip("the fused EMA update needs the custom CPU kernels")
    if not fused:
        monkeypatch.setattr(ema_module, "fused_ema_update", lambda: None)  # as without the kernels
    net = TinyNet(num_classes=4)
    ema = ModelEMA(net, decay=0.999)
    assert (ema.fused_update is not None) == fused
    step, _, _ = _step(net, Config(optimizer="sgd", lr=0.1, epochs=1, loss_scale=loss_scale), ema=ema)
    start = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    step(*_batch())
    decay = 2.0 / 11.0  # (1 + n) / (10 + n) after the first update, below 0.999
    for name, average in ema.averaged_weights().items():
        trained = net.parameters_dict()[name].asnumpy()
        np.testing.assert_allclose(average.asnumpy(), decay * start[name] + (1 - decay) * trained, atol=1e-6)
    trained = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    averages = {name: value.asnumpy().copy() for name, value in ema.averaged_weights().items()}
    with ema.swapped_in():
        assert all(np.array_equal(p.asnumpy(), averages[p.name]) for p in net.get_parameters())
    assert all(np.array_equal(p.asnumpy(), trained[p.name]) for p in net.get_parameters())
    step(*_batch())  # the compiled step still updates the swapped-back parameters, not stale copies
    assert not np.array_equal(ema.averaged_weights()["conv_stem.weight"].asnumpy(), averages["conv_stem.weight"])
    assert not np.array_equal(net.conv_stem.weight.asnumpy(), trained["conv_stem.weight"])


# --- checkpoints -----------------------------------------------------------------------------------------------------

def _save_net(net, path):
    save_checkpoint(str(path), {p.name: p for p in net.get_parameters()}, {"epoch": 3, "model": "tiny"})
    return str(path)


def test_checkpoint_round_trip_and_atomic_write(tmp_path):
    net = TinyNet()
    path = _save_net(net, tmp_path / "w.ckpt")
    assert os.listdir(tmp_path) == ["w.ckpt"]
    tensors, meta = read_checkpoint(path)
    assert meta == {"epoch": 3, "model": "tiny"}
    assert set(tensors) == {p.name for p in net.get_parameters()}
    other = TinyNet()
    assert load_weights(other, path) == "trained"
    assert all(np.array_equal(a.asnumpy(), b.asnumpy()) for a, b in zip(net.get_parameters(), other.get_parameters()))


def test_missing_or_corrupt_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"checkpoint file not found: {tmp_path / 'none.ckpt'}"):
        read_checkpoint(str(tmp_path / "none.ckpt"))
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint file {corrupt}"):
        load_weights(TinyNet(), str(corrupt))


def test_wrong_checkpoint_names_the_keys(tmp_path):
    path = _save_net(TinyNet(width=8), tmp_path / "w8.ckpt")
    with pytest.raises(CheckpointError) as err:
        load_weights(TinyNet(width=16), path)
    assert "wrong shape" in str(err.value) and "conv_stem.weight (8, 1, 3, 3) vs (16, 1, 3, 3)" in str(err.value)
    net = TinyNet()
    weights = {p.name: p for p in net.get_parameters() if p.name != "bn2.gamma"}
    save_checkpoint(str(tmp_path / "partial.ckpt"), {**weights, "extra.weight": Tensor(np.zeros(2, np.float32))})
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint \(1\): bn2.gamma\n.*"
                                              r"not in the model \(1\): extra.weight"):
        load_weights(TinyNet(), str(tmp_path / "partial.ckpt"))


def test_pretrained_drops_a_classifier_of_another_size(tmp_path):
    source = TinyNet(num_classes=10)
    path = _save_net(source, tmp_path / "ten.ckpt")
    target = TinyNet(num_classes=3)
    head_before = target.classifier.weight.asnumpy().copy()
    assert load_pretrained(target, path, "classifier") == ["classifier.weight", "classifier.bias"]
    assert np.array_equal(target.conv_stem.weight.asnumpy(), source.conv_stem.weight.asnumpy())
    assert np.array_equal(target.classifier.weight.asnumpy(), head_before)
    assert load_pretrained(TinyNet(num_classes=10), path, "classifier") == []
    with pytest.raises(CheckpointError, match="conv_stem.weight"):
        load_pretrained(TinyNet(num_classes=3, width=16), path, "classifier")


def test_training_state_restores_everything_and_rejects_another_setup(tmp_path, mode):
    def setup(optimizer):
        ms.set_seed(0)
        net = TinyNet(num_classes=4)
        ema = ModelEMA(net, 0.99)
        step, opt, scaler = _step(net, Config(optimizer=optimizer, lr=0.01, epochs=1, loss_scale="dynamic"), ema=ema)
        return step, TrainingState(net, opt, ema, loss_scaler_state(scaler))

    step, state = setup("adam")
    for _ in range(3):
        step(*_batch())
    state.save(str(tmp_path / "s.ckpt"), epoch=1)
    fresh_step, fresh = setup("adam")
    assert fresh.restore(str(tmp_path / "s.ckpt")) == {"epoch": 1}
    for key, value in state.tensors.items():
        assert np.array_equal(value.asnumpy(), fresh.tensors[key].asnumpy()), key
    assert "state.optimizer.global_step" in fresh.tensors and "state.ema.num_updates" in fresh.tensors
    assert "state.optimizer.learning_rate" not in fresh.tensors
    np.testing.assert_array_equal(step(*_batch())[0].asnumpy(), fresh_step(*_batch())[0].asnumpy())
    with pytest.raises(CheckpointError, match="missing from the checkpoint .*state.optimizer.accum"):
        setup("sgd")[1].restore(str(tmp_path / "s.ckpt"))


def test_run_checkpoints_keep_the_newest(tmp_path):
    runs = RunCheckpoints(str(tmp_path), keep=2)
    net = TinyNet()
    opt = create_optimizer(Config(epochs=1), net.trainable_params(), np.ones(2, np.float32))
    state = TrainingState(net, opt)
    assert runs.latest() is None
    for epoch in (1, 2, 3, 10):
        runs.save_epoch(state, epoch)
    assert [os.path.basename(p) for p in runs.epoch_paths()] == ["epoch_0003.ckpt", "epoch_0010.ckpt"]
    assert runs.latest().endswith("epoch_0010.ckpt")


def test_progress_line_names_the_time_left_in_the_epoch_and_in_the_run(monkeypatch):
    window = ProgressWindow()
    for _ in range(5):
        window.add(loss=1.0, correct=2, timed=True)
    monkeypatch.setattr("time.perf_counter", lambda: window.start + 10.0)  # 2 s per step
    line = ProgressReport(epochs=3, steps_per_epoch=10, batch_size=4, images_per_step=4).step_line(0, 4, window, 0.1)
    assert line.endswith("2.0 img/s  left: epoch 0:00:10, run 0:00:50")  # 5 steps of this epoch, 25 of the run
