"""`FusedSqueezeExcite`: an SE block that in eval mode runs in one launch of squeeze_excite.cc (see that file for
why): pooling, both 1x1 convs with their biases, the ReLU, GhostNet's hard-sigmoid gate and the scaling."""
import mindspore
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.build import keep_float32, squeeze_excite_library
from src.kernels.pointwise import PointwiseConv2d
from src.models.layers import GlobalAvgPool, HardSigmoid, SqueezeExcite
from src.surgery import adopt_cells

_CELLS = ("pool", "conv_reduce", "act1", "conv_expand", "gate", "scale")


def _bprop(x, w1, b1, w2, b2, _out, dout):
    """The SE block's gradients, recomputed with MindSpore's ops (an eval-mode network can be differentiated, e.g.
    for a saliency map)."""
    n, c = x.shape[0], x.shape[1]
    reduced = w1.shape[0]
    pooled = x.mean((2, 3))
    hidden = ops.relu(ops.matmul(pooled, w1.reshape(reduced, c).T) + b1)
    gate_input = ops.matmul(hidden, w2.reshape(c, reduced).T) + b2
    gate = ops.relu6(gate_input + 3.0) / 6.0
    grad_gate_input = ((dout * x).sum((2, 3)) * ((gate_input > -3.0) & (gate_input < 3.0)).astype(x.dtype) / 6.0)
    grad_hidden = ops.matmul(grad_gate_input, w2.reshape(c, reduced)) * (hidden > 0).astype(x.dtype)
    grad_pooled = ops.matmul(grad_hidden, w1.reshape(reduced, c)) / (x.shape[2] * x.shape[3])
    grad_x = dout * gate.reshape(n, c, 1, 1) + grad_pooled.reshape(n, c, 1, 1)
    return (grad_x, ops.matmul(grad_hidden.T, pooled).reshape(w1.shape), grad_hidden.sum(0),
            ops.matmul(grad_gate_input.T, hidden).reshape(w2.shape), grad_gate_input.sum(0))


class FusedSqueezeExcite(SqueezeExcite):
    """The `SqueezeExcite` `module` (after the pass's swaps), holding its cells: same parameters, names and function;
    training runs them, eval mode the kernel."""

    def __init__(self, module):
        nn.Cell.__init__(self)
        adopt_cells(self, module, _CELLS)
        library = squeeze_excite_library()
        self.inference = ops.Custom(f"{library}:se_forward", lambda x, *_: x, lambda x, *_: x, func_type="aot",
                                    bprop=_bprop)

    @staticmethod
    def fits(module) -> bool:
        """src/kernels' 1x1 convs with biases (the ReLU in the first, none after the second), the hard-sigmoid gate,
        a keep-dims mean pooling."""
        if type(module) is not SqueezeExcite:
            return False
        reduce, expand = module.conv_reduce, module.conv_expand
        return (type(reduce) is PointwiseConv2d and type(expand) is PointwiseConv2d and reduce.has_bias
                and expand.has_bias and reduce.inference_bias is not None and reduce.relu and not expand.relu
                and type(module.act1) is nn.Identity and type(module.gate) is HardSigmoid
                and isinstance(module.pool, GlobalAvgPool) and module.pool.keep_dims)

    def construct(self, x):
        if self.training or x.ndim != 4:
            return super().construct(x)
        if x.dtype != mindspore.float32:  # the kernel is float32 only (an AMP-cast input)
            x = x.astype(mindspore.float32)
        return self.inference(x, self.conv_reduce.weight, self.conv_reduce.bias, self.conv_expand.weight,
                              self.conv_expand.bias)

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 (its eval-mode kernel is float32 only)."""
        return super().add_flags_recursive(**keep_float32(flags))
