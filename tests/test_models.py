"""Every registered model: forward in both modes, gradients reach every parameter, sizes, options, contract methods.

Inputs are tiny (batch 2, 32 px, 10 classes) because each graph compile costs seconds on CPU.
"""
import contextlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore

from src.analysis.profile import count_macs, count_params, ghost_speedup
from src.models import create_model, list_models, model_info
from src.models.layers import SqueezeExcite

# The zoo's models; a test-only model registered by a fixture module (family "test") is not held to the contract.
ALL_MODELS = [name for name in list_models() if model_info(name).family != "test"]
NUM_CLASSES = 10

# (model, create_model kwargs, input size, params, MACs to 0.01M; None: not asserted). Params / MACs measured on timm.
EXACT = [
    ("ghostnet_050", {}, 224, 2_587_292, 42.33e6),
    ("ghostnet_100", {}, 224, 5_182_508, 141.15e6),
    ("ghostnet_130", {}, 224, 7_358_820, 227.00e6),
    ("ghostnet_100", dict(num_classes=10), 32, 3_914_318, 5.54e6),
    ("ghostnet_600", {}, 224, 11_939_796, None),
    ("mobilenetv3_large_100", {}, 224, 5_483_032, 216.59e6),
    ("mobilenetv2_100", {}, 224, 3_504_872, 300.77e6),
]


_NETS = {}


def model(name, **kwargs):
    """Build once per (name, options) for the whole file: building costs about a second per model here.

    Tests must leave a shared net as they found it (tests that change it restore it).
    """
    options = dict(num_classes=NUM_CLASSES, drop_rate=0.0, **kwargs)
    key = (name, tuple(sorted(options.items())))
    if key not in _NETS:
        _NETS[key] = create_model(name, **options)
    return _NETS[key]


@pytest.fixture(scope="module", autouse=True)
def _free_nets():
    yield
    _NETS.clear()


@contextlib.contextmanager
def context_mode(mode):
    previous = mindspore.get_context("mode")
    mindspore.set_context(mode=mode)
    try:
        yield
    finally:
        mindspore.set_context(mode=previous)


def batch(size=32, channels=3, n=2, seed=0):
    return mindspore.Tensor(np.random.default_rng(seed).standard_normal((n, channels, size, size), np.float32))


def final_map_size(net, x):
    net.set_train(False)
    with context_mode(mindspore.PYNATIVE_MODE):
        return net.forward_features(x).shape[-1]


# Cell structure -> the model whose graph compiled with it (test_forward_shape, graph mode).
_COMPILED_STRUCTURES = {}


def cell_structure(net):
    """The cells' types in definition order: a width multiplier leaves it unchanged (a ghost ratio may not)."""
    return tuple(type(cell).__name__ for _, cell in net.cells_and_names())


@pytest.mark.parametrize("mode", [mindspore.GRAPH_MODE, mindspore.PYNATIVE_MODE], ids=["graph", "pynative"])
@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_shape(name, mode):
    """Graph mode compiles each cell structure once (up to 44 s for a GhostNetV3): a variant that only scales the
    channels of an already compiled structure builds the same graph; its shapes are checked in PyNative mode."""
    net = model(name)
    structure = cell_structure(net)
    if mode == mindspore.GRAPH_MODE and structure in _COMPILED_STRUCTURES:
        pytest.skip(f"same cells as {_COMPILED_STRUCTURES[structure]}, compiled in graph mode above")
    net.set_train(False)
    with context_mode(mode):
        out = net(batch())
    assert out.shape == (2, NUM_CLASSES)
    assert np.isfinite(out.asnumpy()).all()
    if mode == mindspore.GRAPH_MODE:  # only a graph that compiled and ran stands for its width variants
        _COMPILED_STRUCTURES[structure] = name


@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_reaches_every_parameter(name):
    """Inputs large enough that no gradient is zero by construction: with 1x1 maps, a BN's beta that reaches the
    loss only through (1x1 conv -> BN) paths adds a constant the next BN subtracts again, so its gradient is exactly
    zero. 64 px gives the last stage 2x2 maps; V2/V3's DFC attention pools those to 1x1, so they need 128 px."""
    net = model(name)  # dropout off: a dropped unit must not zero a classifier column by chance
    net.set_train(True)
    params = net.trainable_params()
    target = mindspore.Tensor(np.random.default_rng(1).standard_normal((2, NUM_CLASSES), np.float32))

    def loss_fn(x):
        return (net(x) * target).sum()

    with context_mode(mindspore.PYNATIVE_MODE):
        size = 128 if model_info(name).family in ("ghostnetv2", "ghostnetv3") else 64
        loss, grads = mindspore.value_and_grad(loss_fn, None, weights=params)(batch(size=size))
    net.set_train(False)
    assert np.isfinite(loss.asnumpy())
    zero = [p.name for p, g in zip(params, grads) if not np.any(g.asnumpy())]
    assert not zero, f"no gradient for {zero}"


@pytest.mark.parametrize("name,kwargs,size,params,macs", EXACT,
                         ids=[f"{e[0]}-{e[2]}px-{e[1].get('num_classes', 1000)}cls" for e in EXACT])
def test_exact_counts(name, kwargs, size, params, macs):
    net = create_model(name, **kwargs)
    assert count_params(net) == params
    if macs is not None:
        assert round(count_macs(net, (3, size, size)) / 1e4) == round(macs / 1e4)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_single_channel_input(name):
    net = model(name, in_channels=1)
    net.set_train(False)
    with context_mode(mindspore.PYNATIVE_MODE):
        assert net(batch(channels=1)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_small_input_keeps_a_spatial_map(name):
    x = batch()
    small = final_map_size(model(name, small_input=True), x)
    if model_info(name).input_size[-1] > 64:  # CIFAR-native models have no downsampling to give up
        assert small >= 2
        assert small > final_map_size(model(name), x)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_reset_classifier(name):
    net = model(name, in_channels=1)
    net.set_train(False)
    x = batch(channels=1)
    try:
        with context_mode(mindspore.PYNATIVE_MODE):
            net.reset_classifier(7)
            assert net.num_classes == 7
            assert net(x).shape == (2, 7)
            net.reset_classifier(0)
            pre_logits = net.forward_head(net.forward_features(x), pre_logits=True)
            assert net(x).shape == pre_logits.shape
    finally:
        net.reset_classifier(NUM_CLASSES)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_stages_match_feature_info(name):
    net = model(name)
    net.set_train(False)
    size = 64
    with context_mode(mindspore.PYNATIVE_MODE):
        x = batch(size, n=1)
        stages = net.forward_stages(x)
        features = net.forward_features(x)
    assert len(stages) == len(net.feature_info)
    for out, info in zip(stages, net.feature_info):
        assert out.shape[1] == info["num_chs"], info
        assert out.shape[-1] == math.ceil(size / info["reduction"]), info
    assert features.shape[1] == net.num_features


def test_unknown_model_names_the_closest():
    with pytest.raises(KeyError, match="ghostnet_100"):
        create_model("ghostnet_10")
    with pytest.raises(KeyError, match="ghostnet_130"):
        model_info("ghostnet_13")


def test_ghostnet_names_follow_timm_state_dict():
    """timm's ghostnet_100 has 512 state_dict entries, 80 of them BN num_batches_tracked (which MindSpore lacks)."""
    names = {p.name for p in model("ghostnet_100").get_parameters()}
    assert len(names) == 512 - 80
    for key in ("conv_stem.weight", "bn1.moving_variance", "blocks.0.0.ghost1.primary_conv.0.weight",
                "blocks.0.0.ghost2.cheap_operation.1.gamma", "blocks.1.0.conv_dw.weight", "blocks.1.0.bn_dw.beta",
                "blocks.1.0.shortcut.3.moving_mean", "blocks.6.3.se.conv_reduce.bias",
                "blocks.8.3.se.conv_expand.weight", "blocks.9.0.conv.weight", "blocks.9.0.bn1.gamma",
                "conv_head.bias", "classifier.weight"):
        assert key in names, key


def test_ghostnet_100_nose_is_ghostnet_100_without_se():
    full, nose = model("ghostnet_100"), model("ghostnet_100_nose")
    se_params = sum(count_params(cell) for _, cell in full.cells_and_names() if isinstance(cell, SqueezeExcite))
    assert not any(isinstance(cell, SqueezeExcite) for _, cell in nose.cells_and_names())
    assert count_params(nose) == count_params(full) - se_params


def test_ghost_speedup_approaches_s():
    assert ghost_speedup(c=128, n=128, k=3, d=3, s=2) == pytest.approx(2 * 128 / (128 + 1))
    assert ghost_speedup(c=4096, n=256, k=3, d=3, s=4) == pytest.approx(4, rel=1e-2)


def test_models_import_nothing_of_the_repo_but_themselves():
    """The zoo reads no files and swaps no cells: its modules load no module of src outside src.models."""
    check = ("import importlib, pkgutil, sys, src.models\n"
             "for module in pkgutil.iter_modules(src.models.__path__, 'src.models.'):\n"
             "    importlib.import_module(module.name)\n"
             "print(' '.join(m for m in sys.modules if m.startswith('src.') and m.split('.')[1] not in "
             "('models', 'runtime')))")  # src/__init__.py runs src.runtime
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", check], cwd=repo, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
