"""The custom CPU kernels (src/kernels) against MindSpore's own ops, and the pass that swaps them into a network."""
import ast
import ctypes
import functools
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import src  # noqa: F401
import mindspore as ms
import mindspore.nn as nn

from src.config import Config
from src.configured_model import for_this_device
from src.deploy import prepare_for_inference
from src.kernels import (AllFinite, BatchNorm2d, ChannelScale, DepthwiseConv2d, PointwiseConv2d, StemConv2d,
                         accelerate, build, fused_copy, kernels_usable)
from src.kernels.depthwise import STEM_MAX_CHANNELS
from src.kernels.ghost_bottleneck import FusedGhostBottleneck
from src.kernels.ghost_module import FusedGhostModule
from src.kernels.squeeze_excite import FusedSqueezeExcite
from src.kernels.matmul import MatMulGlobalAvgPool
from src.kernels.pointwise import KernelDense
from src.models import ScaleChannels, create_model
from src.models.ghostnet import BlockSpec, GhostBottleneck, GhostNet
from src.models.layers import GhostModule, SqueezeExcite
from src.surgery import clear_compile_caches

pytestmark = pytest.mark.skipif(not kernels_usable(), reason="custom kernels need the CPU target and a C++ compiler")

GEOMETRIES = [  # (kernel, stride, padding, channels, input H x W): odd sizes, channel counts around the 16 lanes
    (3, 1, 1, 6, (9, 10)),
    (3, 2, 1, 20, (9, 10)),
    (5, 2, 2, 17, (10, 7)),
    (5, 1, 2, 16, (2, 3)),
    ((1, 5), 1, (0, 0, 2, 2), 8, (7, 6)),
    ((5, 1), 1, (2, 2, 0, 0), 8, (7, 6)),
    (1, 1, 0, 33, (5, 5)),
    (3, 1, 1, 4, (1, 1)),
    (3, 1, 1, 3, (17, 16)),  # 16+ output columns: the forward's plane-at-a-time path, one vector and a partial one
    (3, 2, 1, 5, (12, 37)),
    (5, 2, 2, 2, (9, 40)),
    ((1, 5), 1, (0, 0, 2, 2), 2, (3, 33)),
    (4, 2, 2, 3, (9, 37)),  # an even kernel at stride 2: the last input column lies past the last output's taps
]


def _forward_and_grads(net, x, upstream, graph):
    def loss(inputs):
        return (net(inputs) * upstream).sum()
    grad_fn = ms.value_and_grad(loss, 0, net.trainable_params())
    if graph:
        grad_fn = ms.jit(grad_fn)
    _, (grad_x, grad_params) = grad_fn(x)
    return [net(x).asnumpy(), grad_x.asnumpy()] + [g.asnumpy() for g in grad_params]


def _kernel_conv_cases(kind, **options):
    """(ours, reference conv, input shape) over GEOMETRIES: depthwise convs, or stem convs of 1-4 input channels
    (and output channel counts around the 16 vector lanes). `options`: has_bias, relu."""
    for index, (kernel, stride, padding, channels, size) in enumerate(GEOMETRIES):
        if kind == "depthwise":
            ours = DepthwiseConv2d(channels, kernel, stride, padding, **options)
            inputs, outputs, group = channels, channels, channels
        else:
            inputs, outputs, group = index % STEM_MAX_CHANNELS + 1, channels, 1
            ours = StemConv2d(inputs, outputs, kernel, stride, padding, **options)
        reference = nn.Conv2d(inputs, outputs, kernel, stride=stride, pad_mode="pad", padding=padding, group=group,
                              has_bias=options.get("has_bias", False))
        yield ours, reference, (3, inputs, *size)


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
@pytest.mark.parametrize("bias", [False, True], ids=["", "bias"])
@pytest.mark.parametrize("kind", ["depthwise", "stem"])
def test_conv_kernels_match_mindspore_conv_forward_and_backward(kind, graph, bias):
    rng = np.random.default_rng(0)
    for ours, reference, shape in _kernel_conv_cases(kind, has_bias=bias):
        assert ours.custom is not None
        reference.weight.set_data(ours.weight.data.copy())
        if bias:
            ours.bias.set_data(ms.Tensor(rng.standard_normal(ours.out_channels).astype(np.float32)))
            reference.bias.set_data(ours.bias.data.copy())
        x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
        upstream = ms.Tensor(rng.standard_normal(reference(x).shape).astype(np.float32))
        got = _forward_and_grads(ours, x, upstream, graph)
        want = _forward_and_grads(reference, x, upstream, graph)
        for name, a, b in zip(["output", "input grad", "weight grad", "bias grad"], got, want):
            assert a.shape == b.shape, (shape, ours.kernel_size, ours.stride, name)
            scale = max(1.0, float(np.abs(b).max()))
            assert np.abs(a - b).max() <= 1e-5 * scale, (shape, ours.kernel_size, ours.stride, name,
                                                         np.abs(a - b).max())


@pytest.mark.parametrize("amp_level", ["O2", "O3"])
def test_depthwise_kernels_run_under_mixed_precision(amp_level):
    conv = DepthwiseConv2d(8, 3, 1, 1, has_bias=True)
    x = ms.Tensor(np.random.default_rng(2).standard_normal((2, 8, 6, 6)).astype(np.float32))
    want = conv(x).asnumpy()
    got = ms.amp.auto_mixed_precision(nn.SequentialCell([conv]), amp_level)(x)
    assert np.abs(got.asnumpy().astype(np.float32) - want).max() < 1e-2


@pytest.mark.parametrize("relu", [False, True], ids=["bn", "bn_relu"])
@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_batch_norm_kernels_match_mindspore_batch_norm(graph, relu):
    """Training mode: output, gradients and the moving statistics' update; then eval mode (MindSpore's own op).
    With `relu`, the fused kernel against MindSpore's BatchNorm followed by a ReLU. Shapes: planes along their
    vectors with a rest, whole vectors, enough of them for the float lanes to be emptied into the double sums
    within a channel; planes smaller than a vector as spans of channels, 1x1 and 2x3."""
    rng = np.random.default_rng(3)
    for shape in [(4, 6, 5, 7), (16, 20, 8, 8), (2, 3, 64, 66), (3, 17, 1, 1), (5, 17, 2, 3)]:
        ours, reference = BatchNorm2d(shape[1], relu=relu), nn.BatchNorm2d(shape[1], eps=1e-5, momentum=0.9)
        assert ours.custom is not None
        for name in ("gamma", "beta", "moving_mean"):
            value = ms.Tensor(rng.standard_normal(shape[1]).astype(np.float32))
            getattr(ours, name).set_data(value)
            getattr(reference, name).set_data(value.copy())
        x = ms.Tensor((rng.standard_normal(shape) * 3 + 2).astype(np.float32))
        upstream = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
        results = []
        for bn, net in ((ours, ours), (reference, nn.SequentialCell([reference, nn.ReLU()]) if relu else reference)):
            net.set_train(True)
            values = _forward_and_grads(net, x, upstream, graph)  # two training passes: stats updated twice
            net.set_train(False)
            results.append(values + [bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy(), net(x).asnumpy()])
        if relu:
            assert (results[0][0] == 0).mean() > 0.1  # the ReLU cut a good share of the outputs
        names = ["output", "input grad", "gamma grad", "beta grad", "moving mean", "moving variance", "eval output"]
        for name, a, b in zip(names, *results):
            scale = max(1.0, float(np.abs(b).max()))
            assert np.abs(a - b).max() <= 2e-6 * scale, (shape, name, np.abs(a - b).max())


class _ConcatAfter(nn.Cell):
    """concat((prefix, bn(x))) through `bn.concat_after`, or through MindSpore's Concat (`fused=False`)."""

    def __init__(self, bn, fused):
        super().__init__()
        self.bn, self.fused = bn, fused

    def construct(self, prefix, x):
        return self.bn.concat_after(prefix, x) if self.fused else ms.ops.concat((prefix, self.bn(x)), 1)


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_batch_norm_writes_its_concatenation_as_concat_does(graph, relu):
    """The BN_CONCAT kernel's concat((prefix, BN(x))) (a Ghost module's output) against the same BN kernel followed
    by MindSpore's Concat: output, the gradients of prefix, x, gamma and beta, and the moving statistics, bit for
    bit (the same sums, only written elsewhere); planes along vectors and as spans of channels, a prefix wider
    than x; eval mode (MindSpore's BN, then Concat) too."""
    rng = np.random.default_rng(5)
    for prefix_channels, shape in [(6, (4, 6, 5, 7)), (9, (3, 8, 17, 16)), (18, (5, 17, 2, 3))]:
        fused, plain = BatchNorm2d(shape[1], relu=relu), BatchNorm2d(shape[1], relu=relu)
        fused.enable_concat()
        assert fused.custom_concat is not None and plain.custom_concat is None
        for name in ("gamma", "beta", "moving_mean"):
            value = ms.Tensor(rng.standard_normal(shape[1]).astype(np.float32))
            getattr(fused, name).set_data(value)
            getattr(plain, name).set_data(value.copy())
        prefix = ms.Tensor(rng.standard_normal((shape[0], prefix_channels, *shape[2:])).astype(np.float32))
        x = ms.Tensor((rng.standard_normal(shape) * 3 + 2).astype(np.float32))
        upstream = ms.Tensor(rng.standard_normal((shape[0], prefix_channels + shape[1], *shape[2:])).astype(np.float32))
        results = []
        for bn, is_fused in ((fused, True), (plain, False)):
            net = _ConcatAfter(bn, is_fused)
            net.set_train(True)
            values = _value_and_grads(net, (prefix, x), upstream, graph)  # prefix, x, gamma, beta
            net.set_train(False)
            results.append(values + [bn.moving_mean.asnumpy(), bn.moving_variance.asnumpy(), net(prefix, x).asnumpy()])
        names = ["output", "prefix grad", "input grad", "gamma grad", "beta grad", "moving mean", "moving variance",
                 "eval output"]
        for name, a, b in zip(names, *results):
            np.testing.assert_array_equal(a, b, err_msg=f"{shape} {name}")


POINTWISE_SHAPES = [  # (batch, in, out, H, W): 1x1 and sub-vector maps (dot products), part panels, 4n + 1 outputs
    (1, 24, 13, 1, 1), (3, 7, 6, 3, 3), (2, 20, 9, 9, 9), (1, 16, 70, 12, 12), (2, 5, 3, 4, 17)]


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_inference_kernels_apply_bias_and_the_relu_after_it(graph):
    """Eval mode with a bias (a folded conv): one kernel computes conv + bias (+ the ReLU with `relu=True`); its
    gradients still hold (an eval-mode network may be differentiated, e.g. for a saliency map)."""
    rng = np.random.default_rng(4)
    for relu in (False, True):
        cases = [(PointwiseConv2d(i, o, has_bias=True, relu=relu), nn.Conv2d(i, o, 1, has_bias=True), (n, i, h, w))
                 for n, i, o, h, w in POINTWISE_SHAPES]
        for kind in ("depthwise", "stem"):
            cases += _kernel_conv_cases(kind, has_bias=True, relu=relu)
        for ours, reference, shape in cases:
            assert ours.inference_bias is not None
            reference.weight.set_data(ours.weight.data.copy())
            reference.bias.set_data(ms.Tensor(rng.standard_normal(reference.bias.shape).astype(np.float32)))
            ours.bias.set_data(reference.bias.data.copy())
            if relu:
                reference = nn.SequentialCell([reference, nn.ReLU()])
            ours.set_train(False)
            reference.set_train(False)
            x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
            upstream = ms.Tensor(rng.standard_normal(reference(x).shape).astype(np.float32))
            got = _forward_and_grads(ours, x, upstream, graph)
            want = _forward_and_grads(reference, x, upstream, graph)
            if relu:
                assert (want[0] == 0).mean() > 0.05
            for name, a, b in zip(["output", "input grad", "weight grad", "bias grad"], got, want):
                assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max()), \
                    (type(ours).__name__, shape, relu, name, np.abs(a - b).max())


# --- MatMul forms ----------------------------------------------------------------------------------------------

def _value_and_grads(fn, inputs, upstream, graph):
    def weighted(*args):
        return (fn(*args) * upstream).sum()
    grad_fn = ms.value_and_grad(weighted, tuple(range(len(inputs))),
                                getattr(fn, "trainable_params", lambda: [])() or None)
    if graph:
        grad_fn = ms.jit(grad_fn)
    _, grads = grad_fn(*inputs)

    def flatten(value):
        return [t for item in value for t in flatten(item)] if isinstance(value, (tuple, list)) else [value]
    return [fn(*inputs).asnumpy()] + [g.asnumpy() for g in flatten(grads)]


def _mean_over_map(x):
    return ms.ops.mean(x, (2, 3), True)


def _flat_mean_over_map(x):
    return ms.ops.mean(x, (2, 3), False)


def _product(x, scale):
    return x * scale


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
@pytest.mark.parametrize("size", [1, 5], ids=["1x1_map", "5x5_map"])
def test_matmul_forms_match_the_ops_they_replace(graph, size):
    """PointwiseConv2d (MatMul on 1x1 maps in training) and MatMulGlobalAvgPool (MatMul mean) give the outputs and
    gradients of nn.Conv2d and ops.mean."""
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((3, 6, size, size)).astype(np.float32))

    ours = PointwiseConv2d(6, 4, has_bias=True)
    ours.set_train(True)  # the MatMul form is the training one; inference keeps the conv
    plain = ms.nn.Conv2d(6, 4, 1, has_bias=True)
    plain.weight.set_data(ours.weight.data.copy())
    plain.bias.set_data(ms.Tensor(rng.standard_normal(4).astype(np.float32)))
    ours.bias.set_data(plain.bias.data.copy())
    upstream = ms.Tensor(rng.standard_normal((3, 4, size, size)).astype(np.float32))
    pairs = [(_value_and_grads(ours, (x,), upstream, graph), _value_and_grads(plain, (x,), upstream, graph))]

    upstream = ms.Tensor(rng.standard_normal((3, 6, 1, 1)).astype(np.float32))
    pairs.append((_value_and_grads(MatMulGlobalAvgPool(), (x,), upstream, graph),
                  _value_and_grads(_mean_over_map, (x,), upstream, graph)))

    for layer, (got, want) in zip(["PointwiseConv2d", "GlobalAvgPool"], pairs):
        assert len(got) == len(want), layer
        for a, b in zip(got, want):
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max()), layer


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_eval_mode_kernels_of_dense_and_global_pooling_match_mindspore(graph):
    """In eval mode KernelDense and MatMulGlobalAvgPool run kernels (dense_bias, global_mean): outputs and gradients
    (input, weight, bias) as nn.Dense and ops.mean give them, at batches 1 and 3, widths around the 16 lanes and
    maps below and above them; both pooling shapes (keep_dims or not)."""
    rng = np.random.default_rng(3)
    for batch, inputs, outputs, size in [(1, 40, 24, 7), (3, 17, 5, 2), (1, 1280, 100, 1)]:
        dense, plain = KernelDense(inputs, outputs), ms.nn.Dense(inputs, outputs)
        assert dense.inference is not None
        for ours, theirs in zip(dense.get_parameters(), plain.get_parameters()):
            value = rng.standard_normal(theirs.shape).astype(np.float32)
            theirs.set_data(ms.Tensor(value))
            ours.set_data(ms.Tensor(value))
        x = ms.Tensor(rng.standard_normal((batch, inputs)).astype(np.float32))
        upstream = ms.Tensor(rng.standard_normal((batch, outputs)).astype(np.float32))
        pairs = [(_value_and_grads(net.set_train(False), (x,), upstream, graph) for net in (dense, plain))]
        maps = ms.Tensor(rng.standard_normal((batch, outputs, size, size)).astype(np.float32))
        for keep_dims in (True, False):
            pool = MatMulGlobalAvgPool(keep_dims).set_train(False)
            upstream = ms.Tensor(rng.standard_normal((batch, outputs) + (1, 1) * keep_dims).astype(np.float32))
            mean = _mean_over_map if keep_dims else _flat_mean_over_map
            pairs.append((_value_and_grads(pool, (maps,), upstream, graph),
                          _value_and_grads(mean, (maps,), upstream, graph)))
        for got, want in pairs:
            got, want = list(got), list(want)
            assert len(got) == len(want)
            for a, b in zip(got, want):
                assert a.shape == b.shape and _relative_error(a, b) <= 1e-5, (batch, inputs, size)


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_channel_scale_matches_the_broadcast_product(graph):
    """ChannelScale's kernel gives x * scale and its gradients: the product and dx exactly, the scale's gradient
    (a sum over each plane) to float32 rounding, on planes below, at and above the 16 vector lanes; a scale that
    broadcasts over the batch takes MindSpore's product."""
    rng = np.random.default_rng(1)
    for shape, scale_batch in [((3, 6, 1, 1), 3), ((2, 5, 3, 3), 2), ((2, 4, 4, 4), 2), ((3, 7, 9, 11), 3),
                               ((2, 3, 5, 5), 1)]:
        x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
        scale = ms.Tensor(rng.standard_normal((scale_batch, shape[1], 1, 1)).astype(np.float32))
        upstream = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
        ours = ChannelScale()
        assert ours.custom is not None
        (y, grad_x, grad_scale), (y_want, grad_x_want, grad_scale_want) = (
            _value_and_grads(cell, (x, scale), upstream, graph) for cell in (ours, _product))
        np.testing.assert_array_equal(y, y_want)
        np.testing.assert_array_equal(grad_x, grad_x_want)
        exact = (upstream.asnumpy().astype(np.float64) * x.asnumpy()).sum((2, 3), keepdims=True)
        if scale_batch == 1:
            exact = exact.sum(0, keepdims=True)
        assert grad_scale.shape == grad_scale_want.shape == exact.shape
        np.testing.assert_allclose(grad_scale, exact, rtol=1e-5, atol=1e-5)


# --- the pass ----------------------------------------------------------------------------------------------------

TINY = dict(num_classes=10, in_channels=1, small_input=True, drop_rate=0.0)


def short_ghostnet(**options):
    """A three-block GhostNet holding every kind of cell the pass swaps in GhostNets: Ghost modules, a strided 5x5
    depthwise conv with SE and a depthwise shortcut, V2's DFC attention, the final 1x1 ConvBnAct and conv_head on a
    1x1 map (with `small_input`, the first block's stride becomes 1). Graph mode runs on it: compiling a whole
    GhostNet's training graph, plain and accelerated, costs over ten minutes here."""
    stages = [[BlockSpec(3, 16, 8, 0, 2)], [BlockSpec(5, 24, 16, 8, 2)], [BlockSpec(3, 32, 16, 0, 1, attention=True)]]
    return GhostNet(stages, stem_channels=8, final_channels=32, head_channels=64, **options)


# A tiny variant of every family (each has swappable cells) in PyNative mode; the short GhostNet in both modes.
FAMILIES = [("ghostnet_050", dict(width=0.25)), ("ghostnetv2_100", dict(width=0.25)),
            ("ghostnetv3_050", dict(width=0.25)), ("mobilenetv2_100", {}), ("mobilenetv3_large_100", {}),
            ("ghost_resnet56", {}), ("ghost_vgg16", {})]
PASS_CASES = [(name, functools.partial(create_model, name, **options), False) for name, options in FAMILIES] + [
    ("short_ghostnet", short_ghostnet, graph) for graph in (False, True)]


def _kernel_cells(net):
    return [name for name, cell in net.cells_and_names() if type(cell).__module__.startswith("src.kernels")]


def _with_random_statistics(net, seed=0):
    """BN statistics far from their initial values, scales <= 1 (deep nets must not blow up float32 rounding)."""
    rng = np.random.default_rng(seed)
    for name, param in net.parameters_and_names():
        if name.endswith("gamma"):
            param.set_data(ms.Tensor(rng.uniform(0.5, 1.0, param.shape).astype(np.float32)))
        elif name.endswith("moving_variance"):
            param.set_data(ms.Tensor(rng.uniform(1.0, 2.0, param.shape).astype(np.float32)))
        elif name.endswith(("moving_mean", "beta")):
            param.set_data(ms.Tensor(rng.normal(0.0, 0.5, param.shape).astype(np.float32)))
    return net


def _twins(build):
    """(plain, accelerated) builds of one model holding the same weights and BN statistics, the weights drawn from a
    fixed seed: the gradients' bounds below hold for most draws, not all (a ReLU input near zero on one side of it in
    one network and on the other in the other: Ghost-VGG's eval gradients differ by 1e-6 to 1e-2 across seeds)."""
    ms.set_seed(0)
    plain = _with_random_statistics(build(**TINY))
    fast = build(**TINY)
    ms.load_param_into_net(fast, {p.name: ms.Parameter(p.data.copy(), p.name) for p in plain.get_parameters()},
                           strict_load=True)
    params = fast.get_parameters()
    assert accelerate(fast, ms.Tensor(np.zeros((1, 1, 32, 32), np.float32))) is fast
    assert [id(p) for p in fast.get_parameters()] == [id(p) for p in params]  # what an optimizer built later sees
    return plain, fast


def _relative_error(got, want):
    return np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)


@pytest.mark.parametrize("build,graph", [case[1:] for case in PASS_CASES],
                         ids=[f"{name}-{'graph' if graph else 'pynative'}" for name, _, graph in PASS_CASES])
def test_accelerated_network_computes_what_the_plain_one_does(build, graph):
    """Same parameter names and shapes, every depthwise and stem conv, BN and SE scaling swapped; the same outputs
    and gradients in eval and training mode, and the same BN statistics updates.

    Outputs and statistics agree to float rounding. Gradients only loosely, each kernel's being checked tightly
    above: where rounding moves a pre-activation across zero, a ReLU passes a gradient in one network and not the
    other, and with batch statistics a deep network at random init grows such differences layer by layer (1% of
    the gradient norm after MobileNetV2's 52 BNs); so training-mode gradients are compared as a whole."""
    plain, fast = _twins(build)
    assert [(p.name, p.shape) for p in fast.get_parameters()] == [(p.name, p.shape) for p in plain.get_parameters()]
    assert not [cell_name for cell_name, cell in fast.cells_and_names()
                if type(cell) in (nn.BatchNorm2d, ScaleChannels) or type(cell) is nn.Conv2d
                and (cell.group == cell.in_channels > 1 or cell.in_channels <= STEM_MAX_CHANNELS)]
    rng = np.random.default_rng(1)
    x = ms.Tensor(rng.standard_normal((16, 1, 32, 32)).astype(np.float32))
    upstream = ms.Tensor(rng.standard_normal((16, 10)).astype(np.float32))
    for training in (False, True):
        (got, got_statistics), (want, want_statistics) = [
            (_forward_and_grads(net.set_train(training), x, upstream, graph),
             [p.asnumpy() for p in net.get_parameters() if "moving" in p.name]) for net in (fast, plain)]
        mode = "training" if training else "eval"
        assert _relative_error(got[0], want[0]) <= 1e-4, (mode, "output")
        if training:
            assert max(map(_relative_error, got_statistics, want_statistics)) <= 1e-4, "BN statistics"
            gradients = [np.concatenate([g.ravel() for g in values[1:]]) for values in (got, want)]
            assert _relative_error(*gradients) <= 3e-2, "training gradients"
        else:
            errors = [_relative_error(a, b) for a, b in zip(got[1:], want[1:])]
            assert max(errors) <= 1e-2, ("eval gradient", int(np.argmax(errors)), max(errors))


def test_inference_form_runs_relus_inside_the_convs_and_recompiles():
    """BN folded on the plain network, then the pass: each ReLU that alone reads a swapped conv's output (through
    its folded BN's identity) runs in the conv's kernel. Graph mode, network compiled before the pass: the next
    call must run the new cells."""
    net = _with_random_statistics(create_model("ghostnet_050", **TINY))
    x = ms.Tensor(np.random.default_rng(2).standard_normal((1, 1, 32, 32)).astype(np.float32))
    ms.set_context(mode=ms.GRAPH_MODE)
    prepare_for_inference(net, x)
    before = net(x).asnumpy()
    accelerate(net, x)
    after = net(x).asnumpy()
    assert np.abs(after - before).max() <= 1e-5 * max(1.0, np.abs(before).max())
    cells = dict(net.cells_and_names())
    with_relu = {name for name, cell in cells.items() if getattr(cell, "relu", None) is True}
    assert {"blocks.0.0.ghost1.primary_conv.0", "blocks.0.0.ghost1.cheap_operation.0",
            "blocks.3.0.se.conv_reduce", "conv_head"} <= with_relu
    assert type(cells["blocks.3.0.se.act1"]) is nn.Identity and type(cells["blocks.3.0.se.pool"]) is MatMulGlobalAvgPool
    assert "blocks.0.0.ghost2.primary_conv.0" not in with_relu  # the second Ghost module has no activation
    assert cells["conv_stem"].relu is True and type(cells["act1"]) is nn.Identity  # the stem kernel's ReLU


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_ghost_modules_run_in_one_kernel_in_the_inference_form(graph):
    """After BN folding and the pass, every Ghost module of a GhostNet runs its 1x1 conv, depthwise conv and their
    concatenation in one kernel (with and without the ReLUs, batch of 3): the network's output is bit for bit that
    of the same kernels launched one by one with MindSpore's Concat, and training mode leaves the kernel."""
    net, x = _accelerated_inference_form(seed=6, graph=graph)
    modules = [cell for _, cell in net.cells_and_names() if isinstance(cell, GhostModule)]
    assert len(modules) == 32 and all(type(m) is FusedGhostModule and m.inference is not None for m in modules)
    assert {m.primary_conv[0].relu for m in modules} == {False, True}
    fused = _output_without_kernels(net, x, _bottlenecks(net))  # the modules' own kernels (the next test: blocks')
    np.testing.assert_array_equal(fused, _output_without_kernels(net, x, modules))
    net.set_train(True)
    assert net(x).shape == fused.shape  # the training graph: the modules' cells, not the inference kernel


def _accelerated_inference_form(seed, graph):
    """A tiny GhostNet with random BN statistics, BN folded and accelerated, and a batch of 3 for it."""
    net = _with_random_statistics(create_model("ghostnet_050", **TINY))
    x = ms.Tensor(np.random.default_rng(seed).standard_normal((3, 1, 32, 32)).astype(np.float32))
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    prepare_for_inference(net, x)
    accelerate(net, x)
    return net, x


def _output_without_kernels(net, x, fused_cells):
    """`net(x)` with `fused_cells` running their cells instead of their inference kernels (from now on)."""
    for cell in fused_cells:
        cell.inference = None
    clear_compile_caches(net)
    return net(x).asnumpy()


def _bottlenecks(net):
    return [cell for _, cell in net.cells_and_names() if type(cell) is FusedGhostBottleneck]


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_ghost_bottlenecks_run_in_one_kernel_in_the_inference_form(graph):
    """After BN folding and the pass, every GhostNet bottleneck runs in one kernel, in each of the six layouts a
    GhostNet has (strided or not, with SE or not, identity or projection shortcut; batch of 3): the network's output
    is bit for bit that of its Ghost modules', SE blocks' and convs' kernels launched one by one with MindSpore's
    residual Adds, and training mode leaves the kernel. GhostNetV2's blocks with DFC attention and V3's blocks keep
    their own cells."""
    net, x = _accelerated_inference_form(seed=8, graph=graph)
    blocks = _bottlenecks(net)
    assert len(blocks) == 16
    assert {(b.has_dw, b.has_se, b.has_projection) for b in blocks} == {
        (False, False, False), (False, False, True), (False, True, False), (False, True, True), (True, False, True),
        (True, True, True)}
    fused = net(x).asnumpy()
    np.testing.assert_array_equal(fused, _output_without_kernels(net, x, blocks))
    net.set_train(True)
    assert net(x).shape == fused.shape
    v2, v3 = (create_model(name, width=0.25, **TINY) for name in ("ghostnetv2_100", "ghostnetv3_050"))
    for other in (v2, v3):
        prepare_for_inference(other, x)
        accelerate(other, x)
    v2_blocks = [cell for _, cell in v2.cells_and_names() if isinstance(cell, GhostBottleneck)]
    assert [type(b) is FusedGhostBottleneck for b in v2_blocks] == [not b.ghost1.has_attention for b in v2_blocks]
    assert sum(type(b) is FusedGhostBottleneck for b in v2_blocks) == 2  # the first two have no DFC attention
    assert not _bottlenecks(v3)


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_squeeze_excite_runs_in_one_kernel_in_eval_mode(graph):
    """After the pass an SE block's eval mode is one kernel (pooling, both convs, ReLU, hard-sigmoid gate, scaling):
    output and gradients (input, both convs' weights and biases) as MindSpore's ops give them, on maps below, at and
    above the 16 vector lanes, batches of 1 and 3; training mode runs the cells."""
    rng = np.random.default_rng(7)
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    for shape, reduced in [((1, 24, 1, 1), 8), ((3, 20, 4, 4), 8), ((3, 16, 9, 7), 4), ((1, 40, 28, 28), 12)]:
        plain = nn.SequentialCell([SqueezeExcite(shape[1], reduced)])
        for param in plain.get_parameters():
            param.set_data(ms.Tensor(rng.normal(0.0, 1.0, param.shape).astype(np.float32)))
        fast = nn.SequentialCell([SqueezeExcite(shape[1], reduced)])
        ms.load_param_into_net(fast, {p.name: ms.Parameter(p.data.copy(), p.name) for p in plain.get_parameters()})
        x = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
        accelerate(fast, x)
        assert type(fast[0]) is FusedSqueezeExcite
        upstream = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
        for training in (False, True):
            got, want = (_forward_and_grads(net.set_train(training), x, upstream, graph) for net in (fast, plain))
            for index, (a, b) in enumerate(zip(got, want)):
                assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max()), (shape, training, index)


def test_the_pass_follows_the_config():
    net = create_model("ghostnet_050", **TINY)
    assert for_this_device(net, Config(model="ghostnet_050", image_size=32, cpu_kernels="off")) is net
    assert not _kernel_cells(net)
    assert for_this_device(net, Config(model="ghostnet_050", image_size=32)) is net
    assert _kernel_cells(net)


def test_models_import_nothing_from_the_kernels():
    """src/models is plain MindSpore: neither a model file nor anything it imports loads src/kernels."""
    models = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "models")
    for file in os.listdir(models):
        if file.endswith(".py"):
            with open(os.path.join(models, file), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
            imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
            assert not [name for name in imported if name and name.startswith("src.kernels")], file
    check = "import sys, src.models; sys.exit(any(m.startswith('src.kernels') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", check], cwd=os.path.dirname(os.path.dirname(models)),
                          check=False).returncode == 0


def _call_aot(function, *arrays):
    """An AOT kernel called straight through ctypes with MindSpore's signature (the GIL is released during the
    call); the last array is its output. Returns that output."""
    count = len(arrays)
    shapes = [(ctypes.c_int64 * a.ndim)(*a.shape) for a in arrays]
    status = function(count, (ctypes.c_void_p * count)(*[a.ctypes.data for a in arrays]),
                      (ctypes.c_int * count)(*[a.ndim for a in arrays]),
                      (ctypes.POINTER(ctypes.c_int64) * count)(*[ctypes.cast(s, ctypes.POINTER(ctypes.c_int64))
                                                                for s in shapes]),
                      (ctypes.c_char_p * count)(*[b"float32"] * count), None, None)
    assert status == 0
    return arrays[-1]


def _call_pointwise_kernel(x, w, b):
    function = ctypes.CDLL(build.pointwise_library()).pw_bias_relu
    return _call_aot(function, x, w, b, np.empty((x.shape[0], w.shape[0], *x.shape[2:]), np.float32))


def _call_depthwise_weight_grad(x, w, dy, geometry):
    library = ctypes.CDLL(build.depthwise_library(geometry))
    return _call_aot(getattr(library, f"{build.depthwise_name(geometry)}_weight_grad"), x, w, dy, np.zeros_like(w))


@pytest.mark.parametrize("size", [7, 28], ids=["narrow", "wide"])
def test_depthwise_weight_grad_is_bitwise_the_same_serial_and_parallel(size, tmp_path):
    """The weight gradient sums over the batch in fixed groups of images added in order, so a run on one thread (a
    forked child runs serially) gives the very bits of a run on several: training does not depend on the core
    count. Checked against float64 sums too."""
    geometry = (3, 3, 1, 1, 1, 1)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((13, 20, size, size)).astype(np.float32)  # 13 images: groups of unequal size
    w = rng.standard_normal((20, 1, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((13, 20, size, size)).astype(np.float32)
    parallel = _call_depthwise_weight_grad(x, w, dy, geometry)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.stack([np.einsum("nchw,nchw->c", dy, padded[:, :, ky:ky + size, kx:kx + size])
                     for ky in range(3) for kx in range(3)], axis=1).reshape(w.shape)
    assert np.abs(parallel - want).max() <= 1e-4 * np.abs(want).max()
    child = os.fork()
    if child == 0:
        np.save(tmp_path / "serial.npy", _call_depthwise_weight_grad(x, w, dy, geometry))
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    assert np.array_equal(np.load(tmp_path / "serial.npy"), parallel)


def test_kernel_thread_pool_serves_concurrent_callers_and_forked_children():
    """Two threads in one kernel at once (MindSpore runs independent ops in parallel) and a forked child (a data
    worker) must each get the right answer: the pool runs a caller that finds it busy, or a child, serially."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 32, 40, 40)).astype(np.float32)  # large enough to go parallel
    w = rng.standard_normal((48, 32, 1, 1)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    want = np.maximum(np.einsum("nihw,oi->nohw", x, w[:, :, 0, 0]) + b[:, None, None], 0)
    outputs = [None] * 8

    def work(index):
        for _ in range(5):
            outputs[index] = _call_pointwise_kernel(x, w, b)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(outputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got in outputs:
        assert np.abs(got - want).max() <= 1e-4
    child = os.fork()
    if child == 0:
        os._exit(0 if np.abs(_call_pointwise_kernel(x, w, b) - want).max() <= 1e-4 else 1)
    deadline = time.time() + 60
    while time.time() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail("the forked child hung in the kernel's thread pool")
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_missing_compiler_leaves_the_network_plain_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(build, "_CACHE_DIR", str(tmp_path))  # nothing cached: the build must run
    monkeypatch.setitem(build._state, "broken", None)
    net = create_model("ghostnet_050", **TINY)
    with pytest.warns(UserWarning, match="custom CPU kernels unavailable.*no C\\+\\+ compiler"):
        assert for_this_device(net, Config(model="ghostnet_050", image_size=32)) is net
    assert not _kernel_cells(net)
    assert DepthwiseConv2d(8, 3, 1, 1).custom is None and BatchNorm2d(8).custom is None  # MindSpore's own ops


def test_copy_kernel_copies_every_tensor_whole_in_place():
    copy = fused_copy()
    assert copy is not None
    rng = np.random.default_rng(0)
    shapes = [(), (3, 5), (70_000,)]  # the large one spans several of the kernel's chunks
    sources = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    destinations = [ms.Parameter(ms.Tensor(np.zeros(shape, np.float32)), name=f"d{k}") for k, shape in
                    enumerate(shapes)]
    copy(*destinations, *(ms.Tensor(a) for a in sources))
    for destination, source in zip(destinations, sources):
        assert np.array_equal(destination.asnumpy(), source)


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
def test_all_finite_kernel_agrees_with_mindspore_on_every_kind_of_non_finite_value(graph):
    check = AllFinite()
    assert check.fused is not None
    if graph:
        check = ms.jit(check.construct)
    rng = np.random.default_rng(0)
    shapes = [(), (3, 5), (70_000,), (2, 40_000)]  # the large ones span several of the kernel's chunks

    def tensors(position=None, index=None, value=None):
        arrays = [np.asarray(rng.standard_normal(shape) * 1e30, np.float32) for shape in shapes]  # large, finite
        if position is not None:
            arrays[position].reshape(-1)[index] = value
        return tuple(ms.Tensor(a) for a in arrays)

    assert bool(check(tensors()).asnumpy()) is True
    for position, index in [(0, 0), (1, 14), (2, 0), (2, 69_999), (3, 40_000), (3, 79_999)]:
        for value in (np.nan, np.inf, -np.inf):
            batch = tensors(position, index, value)
            got = bool(check(batch).asnumpy())
            assert got is False and got == bool(ms.amp.all_finite(batch).asnumpy()), (position, index, value)
