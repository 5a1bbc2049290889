"""Building blocks shared by the model families: channel rounding, gates, SE and the Ghost module.

Every cell here is export-friendly: out-of-place adds, hard-sigmoid written as relu6(x + 3) / 6.
Child cells are named after the official GhostNet / timm state_dict keys so that checkpoints map one to one.
"""
import math

import mindspore
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels import BatchNorm2d, DepthwiseConv2d, ReluAbsorbing, kernels_usable
from src.kernels.build import keep_float32
from src.kernels.pointwise import pointwise_inference_ops


def make_divisible(value: float, divisor: int = 4, min_value: int = None) -> int:
    """Round `value` to a multiple of `divisor`, never going more than 10% below it (MobileNet rule)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class HardSigmoid(nn.Cell):
    """relu6(x + 3) / 6: the gate of GhostNet's SE; maps cleanly to every exporter."""

    def construct(self, x):
        return ops.relu6(x + 3.0) / 6.0


class HardSwish(nn.Cell):
    """x * relu6(x + 3) / 6."""

    def construct(self, x):
        return x * (ops.relu6(x + 3.0) / 6.0)


_ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hard_swish": HardSwish, "hard_sigmoid": HardSigmoid,
                "sigmoid": nn.Sigmoid}


def activation(name):
    """An activation cell by name; None or '' gives identity (so Sequential indices stay as in the reference)."""
    if not name:
        return nn.Identity()
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; known: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def conv2d(in_channels, out_channels, kernel_size, stride=1, groups=1, bias=False, padding=None):
    """nn.Conv2d with symmetric 'same'-style padding k // 2, as the reference PyTorch code pads.

    Depthwise convs run on the custom CPU kernels when they are usable (src/kernels/depthwise.py).
    """
    if isinstance(kernel_size, int):
        pad = kernel_size // 2 if padding is None else padding
        padding = pad
    else:
        kh, kw = kernel_size
        padding = (kh // 2, kh // 2, kw // 2, kw // 2) if padding is None else padding
    if groups > 1 and groups == in_channels == out_channels and kernels_usable():
        return DepthwiseConv2d(in_channels, kernel_size, stride, padding, has_bias=bias)
    if kernel_size in (1, (1, 1)) and stride == 1 and groups == 1 and padding in (0, (0, 0, 0, 0)):
        return PointwiseConv2d(in_channels, out_channels, has_bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad", padding=padding,
                     group=groups, has_bias=bias)


class PointwiseConv2d(ReluAbsorbing, nn.Conv2d):
    """A 1x1 conv (stride 1, no padding) that, in training, runs as one MatMul when its input map is 1x1: the SE
    convs and the head after global pooling, and the last stages of a 32 px input.

    There a conv is a (N, C) x (C, O) product, but MindSpore's CPU conv kernels (oneDNN) take 5-15x longer than a
    MatMul on it, its weight gradient above all (the head's alone was 45 ms of a 630 ms GhostNet training step at
    32 px). In inference the conv stays (at batch 1 it beat the MatMul plus the copy that reshaping the weight
    costs), and exported graphs keep their convs; with a bias (a BN-folded or SE conv) on CPU with the custom
    kernels, conv + bias and, after `absorb_relu()`, the ReLU that follows run as one kernel
    (src/kernels/pointwise.py). The weight keeps the conv's (O, C, 1, 1) shape and name, so checkpoints and BN
    folding are unchanged. The map size and the training flag are static in graph mode, so the branch is resolved
    when the graph compiles.
    """

    def __init__(self, in_channels, out_channels, has_bias=False):
        super().__init__(in_channels, out_channels, 1, has_bias=has_bias)
        self.matmul = ops.MatMul(transpose_b=True)
        self.inference_bias = self.inference_bias_relu = None
        if kernels_usable():
            self.inference_bias, self.inference_bias_relu = pointwise_inference_ops()

    def construct(self, x):
        if not self.training and self.has_bias and self.inference_bias is not None:
            if x.dtype != mindspore.float32:  # the kernel is float32 only (an AMP-cast inference input)
                x = x.astype(mindspore.float32)
            if self.fused_relu:
                return self.inference_bias_relu(x, self.weight, self.bias)
            return self.inference_bias(x, self.weight, self.bias)
        if not self.training or x.shape[2] != 1 or x.shape[3] != 1:
            out = super().construct(x)
        else:
            out = self.matmul(x.reshape(-1, self.in_channels), self.weight.reshape(self.out_channels, -1))
            if self.has_bias:
                out = out + self.bias
            out = out.reshape(-1, self.out_channels, 1, 1)
        return ops.relu(out) if self.fused_relu else out

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it has the (float32) inference kernels: AMP casts the
        weights of a float16 cell too, which the kernels refuse."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.inference_bias is not None else flags))


def batch_norm(channels):
    """BatchNorm with PyTorch's defaults (eps 1e-5, running-average momentum 0.1 == MindSpore 0.9); in training on
    CPU it runs the custom kernels when they are usable (src/kernels/batch_norm.py)."""
    if kernels_usable():
        return BatchNorm2d(channels, eps=1e-5, momentum=0.9)
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


def batch_norm_act(channels, act):
    """(BN cell, activation cell) for BN followed by `act`. With the custom kernels a ReLU runs inside BN's kernel
    and the activation cell is an identity; either way the pair computes act(BN(x)) and holds the same parameters
    (activations have none), so checkpoints do not depend on it."""
    if act == "relu" and kernels_usable():
        return BatchNorm2d(channels, eps=1e-5, momentum=0.9, relu=True), nn.Identity()
    return batch_norm(channels), activation(act)


class GlobalAvgPool(nn.Cell):
    """Mean over H and W, keeping a 1x1 map (so a 1x1 conv can follow, as in GhostNet's head).

    Computed as a (N*C, H*W) x (H*W, 1) MatMul: MindSpore's CPU ReduceMean and the Tile of its gradient took 4-5 ms
    per SE pooling of a (128, 72, 4, 4) batch, the MatMul 1 ms (forward and backward).
    """

    def __init__(self, keep_dims=True):
        super().__init__()
        self.keep_dims = keep_dims

    def construct(self, x):
        _, c, h, w = x.shape  # the batch stays -1 in reshapes: exported graphs take any batch size
        if h * w == 1:
            return x if self.keep_dims else x.reshape(-1, c)
        pooled = ops.matmul(x.reshape(-1, h * w), ops.full((h * w, 1), 1.0 / (h * w), dtype=x.dtype))
        return pooled.reshape((-1, c, 1, 1) if self.keep_dims else (-1, c))


class ConvBnAct(nn.Cell):
    """conv -> BN -> activation, children named `conv`, `bn1` (timm's ConvBnAct layout)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, act="relu"):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride, groups)
        self.bn1, self.act1 = batch_norm_act(out_channels, act)

    def construct(self, x):
        return self.act1(self.bn1(self.conv(x)))


class ScaleChannels(nn.Cell):
    """x (N, C, H, W) times scale (N, C, 1, 1), the scale's gradient (a sum over H x W) taken as a MatMul.

    MindSpore's autodiff sums the broadcast gradient with a ReduceSum that took 4 ms per SE block for a batch of 32
    at 224 px, 94 ms of a 2.0 s training step; the MatMul form takes a fraction of that. The forward is the plain
    product (and is all an exported graph holds).
    """

    def construct(self, x, scale):
        return x * scale

    def bprop(self, x, scale, _out, dout):
        _, c, h, w = x.shape
        grad_scale = dout * x
        if h * w > 1:
            grad_scale = ops.matmul(grad_scale.reshape(-1, h * w), ops.ones((h * w, 1), x.dtype))
        return dout * scale, grad_scale.reshape(-1, c, 1, 1)


class SqueezeExcite(nn.Cell):
    """Squeeze-and-excitation: pool -> 1x1 reduce -> act -> 1x1 expand -> gate -> scale the input."""

    def __init__(self, channels, reduced_channels, act="relu", gate="hard_sigmoid"):
        super().__init__()
        self.pool = GlobalAvgPool()
        self.conv_reduce = PointwiseConv2d(channels, reduced_channels, has_bias=True)
        self.act1 = activation(act)
        self.conv_expand = PointwiseConv2d(reduced_channels, channels, has_bias=True)
        self.gate = activation(gate)
        self.scale = ScaleChannels()

    def construct(self, x):
        s = self.conv_expand(self.act1(self.conv_reduce(self.pool(x))))
        return self.scale(x, self.gate(s))


class DFCAttention(nn.SequentialCell):
    """GhostNetV2's decoupled fully connected (DFC) attention: a gate computed from a Ghost module's input.

    The six cells (timm's `short_conv`: 1x1 conv + BN, depthwise (1, 5) conv + BN, depthwise (5, 1) conv + BN) mix
    long-range context along rows and columns on the input average-pooled 2x2 / 2, a quarter of the cost; the
    sigmoid of their output is upsampled (nearest) to the gated map's size. A side of length 1 is left unpooled:
    the reference code fails there (the last stage of a 32 px input); every other size pools exactly as it does.
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1):
        super().__init__([
            conv2d(in_channels, out_channels, kernel_size, stride), batch_norm(out_channels),
            self._depthwise(out_channels, (1, 5)), batch_norm(out_channels),
            self._depthwise(out_channels, (5, 1)), batch_norm(out_channels),
        ])

    @staticmethod
    def _depthwise(channels, kernel_size):
        """Pads (1, 5) / (5, 1) kernels (0, 2) / (2, 0) like the reference. Without the custom kernels (export),
        pad_mode "same": explicit padding of a non-square kernel is exported to ONNX with its pads in the wrong
        order."""
        if kernels_usable():
            return conv2d(channels, channels, kernel_size, groups=channels)
        return nn.Conv2d(channels, channels, kernel_size, pad_mode="same", group=channels)

    def construct(self, x, out):
        """`out` gated by the attention computed from `x`."""
        height, width = x.shape[2:]
        window = (min(2, height), min(2, width))
        # Primitives rather than ops.avg_pool2d / ops.interpolate: the ONNX exporter has no AvgPool3D (which
        # avg_pool2d runs on), and interpolate's shape checks fail to compile when the batch size is dynamic.
        gate = ops.sigmoid(super().construct(ops.AvgPool(window, window)(x)))
        return out * ops.ResizeNearestNeighbor(out.shape[2:])(gate)


class GhostModule(nn.Cell):
    """Ghost module: a drop-in for a k x k conv producing `out_channels` maps.

    A primary conv makes ceil(out / ratio) "intrinsic" maps; a cheap depthwise `dw_size` conv makes
    (ratio - 1) ghosts of each; the two are concatenated and cut to `out_channels`. With `act=None` neither
    part has an activation (the second Ghost module of a bottleneck). `attention=True` gates the output with
    GhostNetV2's DFC attention (`short_conv`).
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, ratio=2, dw_size=3, stride=1, act="relu",
                 attention=False):
        super().__init__()
        if ratio < 2:
            raise ValueError(f"Ghost module ratio must be >= 2, got {ratio}")
        self.out_channels = out_channels
        init_channels = math.ceil(out_channels / ratio)
        new_channels = init_channels * (ratio - 1)
        self.primary_conv = nn.SequentialCell([
            conv2d(in_channels, init_channels, kernel_size, stride),
            *batch_norm_act(init_channels, act),
        ])
        self.cheap_operation = nn.SequentialCell([
            conv2d(init_channels, new_channels, dw_size, 1, groups=init_channels),
            *batch_norm_act(new_channels, act),
        ])
        self.needs_slice = init_channels + new_channels != out_channels
        self.has_attention = attention
        if attention:
            self.short_conv = DFCAttention(in_channels, out_channels, kernel_size, stride)

    def construct(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = ops.concat((x1, x2), 1)
        if self.needs_slice:
            out = out[:, : self.out_channels]
        if self.has_attention:
            out = self.short_conv(x, out)
        return out


def last_per_stride(reductions):
    """Indices of the stages that make the feature pyramid: the last stage at each stride, as timm picks them."""
    return tuple(i for i, r in enumerate(reductions) if i + 1 == len(reductions) or reductions[i + 1] != r)
