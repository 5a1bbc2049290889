"""`PointwiseConv2d`: the CPU form of a 1x1 conv (stride 1, no padding): a MatMul in training on 1x1 maps, and in
inference with a bias (a BN-folded or SE conv) conv + bias (+ ReLU) in one launch of the C++ kernel in
pointwise_conv.cc (see that file for why). `KernelDense`: a dense layer whose eval mode is the same kernel."""
import mindspore
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.build import keep_float32, kernels_usable, pointwise_library


def _out_shape(x, w, _b):
    return [x[0], w[0], x[2], x[3]]


def _bias_bprop(x, w, _b, _out, dout):
    """Gradients of conv1x1(x, w) + b (an eval-mode network can still be differentiated, e.g. for saliency)."""
    outputs, inputs = w.shape[0], w.shape[1]
    grad_x = ops.conv2d(dout, w.reshape(outputs, inputs).transpose(1, 0).reshape(inputs, outputs, 1, 1))
    grad_w = ops.matmul(dout.transpose(1, 0, 2, 3).reshape(outputs, -1), x.transpose(1, 0, 2, 3).reshape(inputs, -1).T)
    return grad_x, grad_w.reshape(w.shape), dout.sum((0, 2, 3))


def _bias_relu_bprop(x, w, b, out, dout):
    return _bias_bprop(x, w, b, out, dout * (out > 0).astype(dout.dtype))


def pointwise_inference_ops():
    """Custom ops (x, w, b) -> conv1x1(x, w) + b and its ReLU, with their gradients."""
    library = pointwise_library()
    return tuple(ops.Custom(f"{library}:{name}", _out_shape, lambda x, _w, _b: x, func_type="aot", bprop=gradient)
                 for name, gradient in (("pw_bias", _bias_bprop), ("pw_bias_relu", _bias_relu_bprop)))


class PointwiseConv2d(nn.Conv2d):
    """`nn.Conv2d(in_channels, out_channels, 1, has_bias)` that, in training, runs as one MatMul when its input map
    is 1x1: the SE convs and the head after global pooling, and the last stages of a 32 px input. `relu=True`: the
    ReLU after it too. `init`: nn.Conv2d's weight_init / bias_init.

    There a conv is a (N, C) x (C, O) product, but MindSpore's CPU conv kernels (oneDNN) take 5-15x longer than a
    MatMul on it, its weight gradient above all (the head's alone was 45 ms of a 630 ms GhostNet training step at
    32 px). In inference the conv stays (at batch 1 it beat the MatMul plus the copy that reshaping the weight
    costs); with a bias, conv + bias (+ ReLU) run as one kernel. The weight keeps the conv's (O, C, 1, 1) shape
    and name. The map size and the training flag are static in graph mode, so the branch is resolved when the
    graph compiles.
    """

    def __init__(self, in_channels, out_channels, has_bias=False, relu=False, **init):
        super().__init__(in_channels, out_channels, 1, has_bias=has_bias, **init)
        self.relu = relu
        self.matmul = ops.MatMul(transpose_b=True)
        self.inference_bias = self.inference_bias_relu = None
        if kernels_usable():
            self.inference_bias, self.inference_bias_relu = pointwise_inference_ops()

    def construct(self, x):
        if not self.training and self.has_bias and self.inference_bias is not None:
            if x.dtype != mindspore.float32:  # the kernel is float32 only (an AMP-cast inference input)
                x = x.astype(mindspore.float32)
            if self.relu:
                return self.inference_bias_relu(x, self.weight, self.bias)
            return self.inference_bias(x, self.weight, self.bias)
        if not self.training or x.shape[2] != 1 or x.shape[3] != 1:
            out = super().construct(x)
        else:
            out = self.matmul(x.reshape(-1, self.in_channels), self.weight.reshape(self.out_channels, -1))
            if self.has_bias:
                out = out + self.bias
            out = out.reshape(-1, self.out_channels, 1, 1)
        return ops.relu(out) if self.relu else out

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it has the (float32) inference kernels: AMP casts the
        weights of a float16 cell too, which the kernels refuse."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.inference_bias is not None else flags))


def _dense_bprop(x, w, _b, _out, dout):
    """Gradients of x w^T + b (an eval-mode network can still be differentiated, e.g. for saliency)."""
    return ops.matmul(dout, w), ops.matmul(dout.T, x), dout.sum(0)


class KernelDense(nn.Dense):
    """`nn.Dense(in_channels, out_channels, has_bias)` without activation whose eval mode on a (N, in_channels)
    input runs pointwise_conv.cc's kernel (dense_bias): a classifier at batch 1 is a matrix-vector product, for
    which MindSpore's CPU MatMul packs the whole weight. Training runs nn.Dense. `init`: nn.Dense's weight_init /
    bias_init."""

    def __init__(self, in_channels, out_channels, has_bias=True, **init):
        super().__init__(in_channels, out_channels, has_bias=has_bias, **init)
        self.inference = None
        if kernels_usable():
            self.inference = ops.Custom(f"{pointwise_library()}:dense_bias", lambda x, w, _b: [x[0], w[0]],
                                        lambda x, _w, _b: x, func_type="aot", bprop=_dense_bprop)

    def construct(self, x):
        if self.training or not self.has_bias or self.inference is None or x.ndim != 2:
            return super().construct(x)
        if x.dtype != mindspore.float32:  # the kernel is float32 only (an AMP-cast inference input)
            x = x.astype(mindspore.float32)
        return self.inference(x, self.weight, self.bias)

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it has the (float32) kernel (see PointwiseConv2d)."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.inference is not None else flags))
