"""Whole-list tensor operations through the C++ kernels in tensor_list.cc on CPU (see that file for why): the
finiteness check of every gradient, the EMA update of every parameter and the copy of every BN statistic, one launch
each instead of one or a few operators per tensor. Elsewhere, or when the kernels cannot be built, MindSpore's own operators.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.build import build_library, kernels_usable


def _list_op(entry: str):
    """The Custom op `entry` of tensor_list.cc: any number of float32 inputs -> one float32 (1,) output."""
    library = build_library("tensor_list.cc", "tensor_list", {})
    return ops.Custom(f"{library}:{entry}", lambda *shapes: [1], lambda *dtypes: ms.float32, func_type="aot")


class AllFinite(nn.Cell):
    """`all_finite(tensors)` -> bool scalar tensor: no element of `tensors` is inf or NaN. The one-launch kernel
    takes float32 only: `float32_inputs=False` (a caller that cannot promise it) always uses MindSpore's ops."""

    def __init__(self, float32_inputs=True):
        super().__init__()
        self.fused = _list_op("all_finite") if float32_inputs and kernels_usable() else None

    def construct(self, tensors):
        if self.fused is None:
            return ms.amp.all_finite(tensors)
        return self.fused(*tensors)[0] > 0.5


def fused_ema_update():
    """None, or an op `(decay (1,), *averages, *values) -> decay` that sets each average to
    average + (value - average) * (1 - decay) in place (the averages must be Parameters; float32 only)."""
    return _list_op("ema_update") if kernels_usable() else None


def fused_copy():
    """None, or an op `(*destinations, *sources) -> (1,)` that copies each source into its destination in place
    (the destinations must be Parameters; float32 only)."""
    return _list_op("copy_into") if kernels_usable() else None
