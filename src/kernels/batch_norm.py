"""Training-mode BatchNorm through the C++ kernels in batch_norm.cc on CPU (see that file for why).

`BatchNorm2d` is an `nn.BatchNorm2d` (same parameters and moving statistics, same checkpoint keys, same update
rule: unbiased batch variance, moving = (1 - m) * moving + m * batch with MindSpore's m = 1 - momentum). With
batch statistics on CPU its construct calls the AOT custom operators; in eval mode (moving statistics), on other
devices, or when the kernels cannot be built, it is MindSpore's own BatchNorm.
"""
import mindspore.nn as nn
import mindspore.ops as ops
import numpy as np
from mindspore import Tensor

from src.kernels.build import build_library, keep_float32, kernels_usable


def _batch_norm_op(eps: float, relu: bool, concat: bool = False):
    """Custom op (x, gamma, beta, moving mean, moving variance, (keep, weight)) -> (y, batch mean, batch 1/std,
    unbiased batch variance), with its gradient; it also sets each moving statistic to moving * keep + batch *
    weight in place (the moving statistics must be Parameters). `relu`: y = relu(BN(x)) in the same pass.
    `concat`: the op takes a first input `prefix` (N, P, H, W) and its y is concat((prefix, BN(x)), channels)."""
    name = ("bn_eps" + f"{eps:.0e}".replace("-", "m").replace("+", "p") + ("_relu" if relu else "")
            + ("_concat" if concat else ""))
    library = build_library("batch_norm.cc", name, {"BN_EPS": repr(float(eps)), "BN_RELU": int(relu),
                                                    "BN_CONCAT": int(concat), "BN_NAME(fn)": f"{name}_##fn"})
    if concat:
        return _concat_ops(library, name)

    def stats_like(x, gamma, *_):
        return (x, gamma, gamma, gamma)

    backward = ops.Custom(f"{library}:{name}_backward", lambda x, gamma, _m, _s, _y, _dy: (x, gamma, gamma),
                          lambda x, gamma, _m, _s, _y, _dy: (x, gamma, gamma), func_type="aot")

    def bprop(x, gamma, _beta, moving_mean, moving_variance, factors, out, dout):
        dx, dgamma, dbeta = backward(x, gamma, out[1], out[2], out[0], dout[0])
        return dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_variance), ops.zeros_like(factors)

    return ops.Custom(f"{library}:{name}_forward", stats_like, stats_like, func_type="aot", bprop=bprop)


def _concat_ops(library, name):
    """The BN_CONCAT forms of _batch_norm_op: (prefix, x, gamma, ...) -> (concat((prefix, y)), mean, 1/std, var)."""
    def concat_shapes(prefix, x, gamma, _beta, _mean, _variance, _factors):
        return ([x[0], prefix[1] + x[1], x[2], x[3]], gamma, gamma, gamma)

    def concat_types(_prefix, x, gamma, _beta, _mean, _variance, _factors):
        return (x, gamma, gamma, gamma)

    def backward_like(x, gamma, _mean, _invstd, _y, _dy, prefix):
        return (x, gamma, gamma, prefix)

    backward = ops.Custom(f"{library}:{name}_backward", backward_like, backward_like, func_type="aot")

    def bprop(prefix, x, gamma, _beta, moving_mean, moving_variance, factors, out, dout):
        dx, dgamma, dbeta, dprefix = backward(x, gamma, out[1], out[2], out[0], dout[0], prefix)
        return (dprefix, dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_variance),
                ops.zeros_like(factors))

    return ops.Custom(f"{library}:{name}_forward", concat_shapes, concat_types, func_type="aot", bprop=bprop)


class BatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d(num_features, eps, momentum)` whose batch-statistics pass runs the custom CPU kernels.

    `relu=True`: the cell computes relu(BN(x)), in the kernel's own pass when training on CPU (the ReLU and its
    gradient were ~10% of a 224 px training step as separate operators); the ReLU cell after it goes.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.9, relu=False):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.relu = relu
        self.custom = _batch_norm_op(eps, relu) if kernels_usable() else None
        self.custom_concat = None  # built by enable_concat()
        # float32 as MindSpore rounds the Python scalars of `moving * (1 - m) + batch * m` (m: self.momentum)
        self.blend_factors = Tensor(np.array([1.0 - self.momentum, self.momentum], np.float32))

    def construct(self, x):
        batch_statistics = self.training if self.use_batch_statistics is None else self.use_batch_statistics
        if self.custom is None or not batch_statistics or x.ndim != 4:
            y = super().construct(x)
            return ops.relu(y) if self.relu else y
        return self.custom(x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.blend_factors)[0]

    def enable_concat(self):
        """Make `concat_after` one kernel pass in training (src/kernels/ghost_module.py asks for it)."""
        if self.custom is not None and self.custom_concat is None:
            self.custom_concat = _batch_norm_op(self.eps, self.relu, concat=True)

    def concat_after(self, prefix, x):
        """concat((prefix, self(x)), channels): in training on CPU after `enable_concat`, written by the BN kernel
        itself, where MindSpore's Concat and its gradient's two Slices would each pass over both tensors again."""
        batch_statistics = self.training if self.use_batch_statistics is None else self.use_batch_statistics
        if self.custom_concat is None or not batch_statistics or x.ndim != 4 or prefix.dtype != x.dtype:
            return ops.concat((prefix, self.construct(x)), 1)
        return self.custom_concat(prefix, x, self.gamma, self.beta, self.moving_mean, self.moving_variance,
                                  self.blend_factors)[0]

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it runs the (float32) kernels."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.custom is not None else flags))
