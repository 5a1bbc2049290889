"""Building blocks shared by the model families: channel rounding, gates, SE, the Ghost module and BN folding's
arithmetic (GhostNetV3's re-parameterisation, src/deploy).

Every cell here is export-friendly: out-of-place adds, hard-sigmoid written as relu6(x + 3) / 6.
Child cells are named after the official GhostNet / timm state_dict keys so that checkpoints map one to one.
"""
import math

import numpy as np
import mindspore.nn as nn
import mindspore.ops as ops


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
    """nn.Conv2d with symmetric 'same'-style padding k // 2, as the reference PyTorch code pads."""
    if isinstance(kernel_size, int):
        padding = kernel_size // 2 if padding is None else padding
    else:
        kh, kw = kernel_size
        padding = (kh // 2, kh // 2, kw // 2, kw // 2) if padding is None else padding
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad", padding=padding,
                     group=groups, has_bias=bias)


def batch_norm(channels):
    """BatchNorm with PyTorch's defaults (eps 1e-5, running-average momentum 0.1 == MindSpore 0.9)."""
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


class GlobalAvgPool(nn.Cell):
    """Mean over H and W, keeping a 1x1 map (so a 1x1 conv can follow, as in GhostNet's head) or not."""

    def __init__(self, keep_dims=True):
        super().__init__()
        self.keep_dims = keep_dims

    def construct(self, x):
        return x.mean((2, 3), self.keep_dims)


class ConvBnAct(nn.Cell):
    """conv -> BN -> activation, children named `conv`, `bn1` (timm's ConvBnAct layout)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, act="relu"):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride, groups)
        self.bn1 = batch_norm(out_channels)
        self.act1 = activation(act)

    def construct(self, x):
        return self.act1(self.bn1(self.conv(x)))


class ScaleChannels(nn.Cell):
    """x (N, C, H, W) times scale (N, C, 1, 1): SE's gating, a cell of its own so the CPU pass can give it a faster
    gradient (src/kernels/matmul.py)."""

    def construct(self, x, scale):
        return x * scale


class SqueezeExcite(nn.Cell):
    """Squeeze-and-excitation: pool -> 1x1 reduce -> act -> 1x1 expand -> gate -> scale the input."""

    def __init__(self, channels, reduced_channels, act="relu", gate="hard_sigmoid"):
        super().__init__()
        self.pool = GlobalAvgPool()
        self.conv_reduce = conv2d(channels, reduced_channels, 1, bias=True)
        self.act1 = activation(act)
        self.conv_expand = conv2d(reduced_channels, channels, 1, bias=True)
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
        """Pads (1, 5) / (5, 1) kernels (0, 2) / (2, 0) like the reference, as pad_mode "same": explicit padding of a
        non-square kernel is exported to ONNX with its pads in the wrong order."""
        return nn.Conv2d(channels, channels, kernel_size, pad_mode="same", group=channels)

    def construct(self, x, out):
        """`out` gated by the attention computed from `x`."""
        height, width = x.shape[2:]
        window = (min(2, height), min(2, width))
        # A primitive rather than ops.avg_pool2d: the ONNX exporter has no AvgPool3D (which avg_pool2d runs on).
        gate = ops.sigmoid(super().construct(ops.AvgPool(window, window)(x)))
        return out * _unpool_nearest(_unpool_nearest(gate, 2, out.shape[2]), 3, out.shape[3])


def _unpool_nearest(x, axis, size):
    """Nearest upsampling of `x` along `axis` (2 or 3 of N x C x H x W) from n to `size`, where n is `size` halved
    by 2 / 2 pooling (size 2n or 2n + 1; n = size = 1 is unpooled): every row (column) twice, the first once more
    when `size` is odd. These are exactly nearest interpolation's sources floor(i * n / size), copied, so the values
    are those of ops.ResizeNearestNeighbor / timm's F.interpolate. That op is not used because MindSpore's ONNX
    exporter bakes the batch size into its target shape (-1 under a dynamic batch, which ONNX Runtime refuses)."""
    channels, height, width = x.shape[1:]
    n = x.shape[axis]
    if size == n:
        return x
    doubled = ops.concat((ops.expand_dims(x, axis + 1), ops.expand_dims(x, axis + 1)), axis + 1)
    x = ops.reshape(doubled, (-1, channels, 2 * height, width) if axis == 2 else (-1, channels, height, 2 * width))
    if size == 2 * n + 1:
        first = x[:, :, :1] if axis == 2 else x[:, :, :, :1]
        x = ops.concat((first, x), axis)
    return x


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
            batch_norm(init_channels),
            activation(act),
        ])
        self.cheap_operation = nn.SequentialCell([
            conv2d(init_channels, new_channels, dw_size, 1, groups=init_channels),
            batch_norm(new_channels),
            activation(act),
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


def folded_batchnorm(kernel, bias, bn):
    """(kernel, bias) in float64 of a conv with `kernel` (out, in, kh, kw) and `bias` (out,) or 0.0, followed by
    `bn` in eval mode: with s = gamma / sqrt(moving_variance + eps), kernel * s and beta + (bias - moving_mean) * s."""
    scale = bn.gamma.asnumpy().astype(np.float64) / np.sqrt(bn.moving_variance.asnumpy().astype(np.float64) + bn.eps)
    return kernel * scale.reshape(-1, 1, 1, 1), bn.beta.asnumpy() + (bias - bn.moving_mean.asnumpy()) * scale
