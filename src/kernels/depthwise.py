"""Depthwise convolution through the C++ kernels in depthwise_conv.cc on CPU (see that file for why).

`DepthwiseConv2d` is an `nn.Conv2d` (same parameter, same checkpoint keys, same maths); on CPU its construct calls
the AOT custom operators, elsewhere or when the kernels cannot be built it is the plain convolution. In inference a
BN-folded conv (it has a bias) runs bias and, with `relu=True`, the ReLU after it inside the same kernel.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.build import depthwise_library, depthwise_name, keep_float32, kernels_usable


def _depthwise_ops(geometry):
    """Custom ops for one geometry, each carrying its gradient: (x, w) -> conv(x, w) (training), and the inference
    forms (x, w, b) -> conv(x, w) + b and its ReLU."""
    library = depthwise_library(geometry)
    name = depthwise_name(geometry)
    kh, kw, sh, sw, ph, pw = geometry

    def out_shape(x, *_):
        return [x[0], x[1], (x[2] + 2 * ph - kh) // sh + 1, (x[3] + 2 * pw - kw) // sw + 1]

    input_grad = ops.Custom(f"{library}:{name}_input_grad", lambda x, _w, _dy: x, lambda x, _w, _dy: x,
                            func_type="aot")
    weight_grad = ops.Custom(f"{library}:{name}_weight_grad", lambda _x, w, _dy: w, lambda _x, w, _dy: w,
                             func_type="aot")

    def bprop(x, w, _out, dout):
        return input_grad(x, w, dout), weight_grad(x, w, dout)

    def bias_bprop(x, w, _b, _out, dout):
        return input_grad(x, w, dout), weight_grad(x, w, dout), dout.sum((0, 2, 3))

    def bias_relu_bprop(x, w, b, out, dout):
        return bias_bprop(x, w, b, out, dout * (out > 0).astype(dout.dtype))

    forward = ops.Custom(f"{library}:{name}_forward", out_shape, lambda x, _w: x, func_type="aot", bprop=bprop)
    forward_bias, forward_bias_relu = (
        ops.Custom(f"{library}:{name}_forward_bias{suffix}", out_shape, lambda x, _w, _b: x, func_type="aot",
                   bprop=gradient) for suffix, gradient in (("", bias_bprop), ("_relu", bias_relu_bprop)))
    return forward, forward_bias, forward_bias_relu


class DepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d(channels, channels, kernel_size, stride, pad_mode='pad', padding, group=channels, has_bias)`;
    `relu=True`: followed by a ReLU (in the inference kernel's own pass). `init`: nn.Conv2d's weight_init /
    bias_init."""

    def __init__(self, channels, kernel_size, stride=1, padding=0, has_bias=False, relu=False, **init):
        super().__init__(channels, channels, kernel_size, stride=stride, pad_mode="pad", padding=padding,
                         group=channels, has_bias=has_bias, **init)
        self.relu = relu
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom, left, right = (self.padding,) * 4 if isinstance(self.padding, int) else self.padding
        self.custom = self.inference_bias = self.inference_bias_relu = None
        if top == bottom and left == right and tuple(self.dilation) in ((1, 1), (1, 1, 1, 1)) and kernels_usable():
            self.custom, self.inference_bias, self.inference_bias_relu = _depthwise_ops((kh, kw, sh, sw, top, left))

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
