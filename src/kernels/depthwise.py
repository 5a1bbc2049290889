"""Convolutions through the per-geometry C++ kernels in depthwise_conv.cc on CPU (see that file for why): depthwise
convs, and dense convs with few input channels (a network's stem).

`DepthwiseConv2d` and `StemConv2d` are `nn.Conv2d`s (same parameter, same checkpoint keys, same maths); on CPU their
construct calls the AOT custom operators, elsewhere or when the kernels cannot be built it is the plain convolution.
In inference a BN-folded conv (it has a bias) runs bias and, with `relu=True`, the ReLU after it inside the same
kernel.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.build import depthwise_library, depthwise_name, keep_float32, kernels_usable

STEM_MAX_CHANNELS = 4  # input channels up to which a dense conv runs the stem kernels (their cost grows with them)


def _conv_ops(geometry, kind):
    """Custom ops for one geometry, each carrying its gradient: (x, w) -> conv(x, w) (training), and the inference
    forms (x, w, b) -> conv(x, w) + b and its ReLU. `kind`: "" (depthwise) or "dense_" (the stem kernels)."""
    library = depthwise_library(geometry)
    name = f"{depthwise_name(geometry)}_{kind}"
    kh, kw, sh, sw, ph, pw = geometry

    def out_shape(x, w, *_):  # w (out channels, in channels / group, kh, kw)
        return [x[0], w[0], (x[2] + 2 * ph - kh) // sh + 1, (x[3] + 2 * pw - kw) // sw + 1]

    input_grad = ops.Custom(f"{library}:{name}input_grad", lambda x, _w, _dy: x, lambda x, _w, _dy: x,
                            func_type="aot")
    weight_grad = ops.Custom(f"{library}:{name}weight_grad", lambda _x, w, _dy: w, lambda _x, w, _dy: w,
                             func_type="aot")

    def bprop(x, w, _out, dout):
        return input_grad(x, w, dout), weight_grad(x, w, dout)

    def bias_bprop(x, w, _b, _out, dout):
        return input_grad(x, w, dout), weight_grad(x, w, dout), dout.sum((0, 2, 3))

    def bias_relu_bprop(x, w, b, out, dout):
        return bias_bprop(x, w, b, out, dout * (out > 0).astype(dout.dtype))

    forward = ops.Custom(f"{library}:{name}forward", out_shape, lambda x, _w: x, func_type="aot", bprop=bprop)
    forward_bias, forward_bias_relu = (
        ops.Custom(f"{library}:{name}forward_bias{suffix}", out_shape, lambda x, _w, _b: x, func_type="aot",
                   bprop=gradient) for suffix, gradient in (("", bias_bprop), ("_relu", bias_relu_bprop)))
    return forward, forward_bias, forward_bias_relu


class _KernelConv2d(nn.Conv2d):
    """An `nn.Conv2d` (pad_mode 'pad') that runs the `kind` kernels of depthwise_conv.cc when they apply: symmetric
    padding, no dilation, the CPU kernels usable. `relu=True`: followed by a ReLU (in the inference kernel's own
    pass). `init`: nn.Conv2d's weight_init / bias_init."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, group, has_bias, relu, kind,
                 **init):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad", padding=padding,
                         group=group, has_bias=has_bias, **init)
        self.relu = relu
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom, left, right = (self.padding,) * 4 if isinstance(self.padding, int) else self.padding
        self.custom = self.inference_bias = self.inference_bias_relu = None
        self.geometry = (kh, kw, sh, sw, top, left)  # the kernels' (kernel, stride, padding)
        if top == bottom and left == right and tuple(self.dilation) in ((1, 1), (1, 1, 1, 1)) and kernels_usable():
            self.custom, self.inference_bias, self.inference_bias_relu = _conv_ops(self.geometry, kind)

    def construct(self, x):
        if self.custom is None:
            y = super().construct(x)
        elif not self.training and self.has_bias:
            if self.relu:
                return self.inference_bias_relu(x, self.weight, self.bias)
            return self.inference_bias(x, self.weight, self.bias)
        else:
            y = self.custom(x, self.weight)
            y = self.bias_add(y, self.bias) if self.has_bias else y
        return ops.relu(y) if self.relu else y

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it runs the (float32) kernels."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.custom is not None else flags))


class DepthwiseConv2d(_KernelConv2d):
    """`nn.Conv2d(channels, channels, kernel_size, stride, pad_mode='pad', padding, group=channels, has_bias)`."""

    def __init__(self, channels, kernel_size, stride=1, padding=0, has_bias=False, relu=False, **init):
        super().__init__(channels, channels, kernel_size, stride, padding, channels, has_bias, relu, "", **init)


class StemConv2d(_KernelConv2d):
    """`nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad_mode='pad', padding, has_bias)` with few input
    channels (at most STEM_MAX_CHANNELS): a network's first conv. Its input gradient is plain loops, computed only
    when asked for (not in training, where the input is data)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, has_bias=False, relu=False,
                 **init):
        if in_channels > STEM_MAX_CHANNELS:
            raise ValueError(f"StemConv2d takes at most {STEM_MAX_CHANNELS} input channels, got {in_channels}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, 1, has_bias, relu, "dense_",
                         **init)
