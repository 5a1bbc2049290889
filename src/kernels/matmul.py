"""MatMul forms of two reductions that MindSpore's CPU backend runs slowly: the mean of global average pooling and
the gradient of SE's channel scaling. Same maths as the cells of src/models/layers.py they subclass."""
import mindspore.ops as ops

from src.models.layers import GlobalAvgPool, ScaleChannels


class MatMulGlobalAvgPool(GlobalAvgPool):
    """Mean over H and W as a (N*C, H*W) x (H*W, 1) MatMul: MindSpore's CPU ReduceMean and the Tile of its gradient
    took 4-5 ms per SE pooling of a (128, 72, 4, 4) batch, the MatMul 1 ms (forward and backward)."""

    def construct(self, x):
        _, c, h, w = x.shape
        if h * w == 1:
            return x if self.keep_dims else x.reshape(-1, c)
        pooled = ops.matmul(x.reshape(-1, h * w), ops.full((h * w, 1), 1.0 / (h * w), dtype=x.dtype))
        return pooled.reshape((-1, c, 1, 1) if self.keep_dims else (-1, c))


class MatMulScaleChannels(ScaleChannels):
    """x * scale whose gradient for the scale (a sum over H x W) is a MatMul: MindSpore's autodiff sums the
    broadcast gradient with a ReduceSum that took 4 ms per SE block for a batch of 32 at 224 px on CPU, 94 ms of a
    2.0 s training step; the MatMul form takes a fraction of that."""

    def bprop(self, x, scale, _out, dout):
        _, c, h, w = x.shape
        grad_scale = dout * x
        if h * w > 1:
            grad_scale = ops.matmul(grad_scale.reshape(-1, h * w), ops.ones((h * w, 1), x.dtype))
        return dout * scale, grad_scale.reshape(-1, c, 1, 1)
