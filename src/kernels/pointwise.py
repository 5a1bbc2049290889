"""Inference form of a BN-folded 1x1 conv through the C++ kernel in pointwise_conv.cc on CPU (see that file for why):
conv, bias and optionally the ReLU after it in one launch. `src.models.layers.PointwiseConv2d` calls it in
inference when it has a bias; training, export (kernels off) and other devices keep MindSpore's own ops."""
import mindspore.ops as ops

from src.kernels.build import pointwise_library


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
