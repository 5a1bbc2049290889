"""The MatMul form of a reduction that MindSpore's CPU backend runs slowly: the mean of global average pooling, in
training; in eval mode one kernel pass (squeeze_excite.cc's global_mean). Same maths as the cell of
src/models/layers.py it subclasses."""
import mindspore
import mindspore.ops as ops

from src.kernels.build import keep_float32, kernels_usable, squeeze_excite_library
from src.models.layers import GlobalAvgPool


def _global_mean_op():
    """Custom op x (N, C, H, W) -> its mean over H and W, (N, C, 1, 1), float32, with its gradient. One output shape
    only: MindSpore keeps the first shape function registered for an AOT function name, so a second op on
    global_mean with another shape function would get the first's."""

    def bprop(x, _out, dout):
        return (ops.broadcast_to(dout / (x.shape[2] * x.shape[3]), x.shape),)

    return ops.Custom(f"{squeeze_excite_library()}:global_mean", lambda x: [x[0], x[1], 1, 1], lambda x: x,
                      func_type="aot", bprop=bprop)


class MatMulGlobalAvgPool(GlobalAvgPool):
    """Mean over H and W as a (N*C, H*W) x (H*W, 1) MatMul in training: MindSpore's CPU ReduceMean and the Tile of
    its gradient took 4-5 ms per SE pooling of a (128, 72, 4, 4) batch, the MatMul 1 ms (forward and backward). In
    eval mode the kernel: the MatMul took 0.09-0.10 ms for GhostNet's head at batch 1, packing its operands."""

    def __init__(self, keep_dims=True):
        super().__init__(keep_dims)
        self.inference = _global_mean_op() if kernels_usable() else None

    def construct(self, x):
        _, c, h, w = x.shape
        if h * w == 1:
            return x if self.keep_dims else x.reshape(-1, c)
        if not self.training and self.inference is not None:
            if x.dtype != mindspore.float32:  # the kernel is float32 only (an AMP-cast input)
                x = x.astype(mindspore.float32)
            pooled = self.inference(x)
            return pooled if self.keep_dims else pooled.reshape(-1, c)
        pooled = ops.matmul(x.reshape(-1, h * w), ops.full((h * w, 1), 1.0 / (h * w), dtype=x.dtype))
        return pooled.reshape((-1, c, 1, 1) if self.keep_dims else (-1, c))

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it has the (float32) kernel: AMP would otherwise hand
        the kernel float16 data (see PointwiseConv2d)."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.inference is not None else flags))
