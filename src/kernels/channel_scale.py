"""`ChannelScale`: SE's x * scale through the C++ kernels in channel_scale.cc on CPU (see that file for why)."""
import mindspore.ops as ops

from src.kernels.build import build_library, keep_float32, kernels_usable
from src.models.layers import ScaleChannels


def _channel_scale_op():
    """Custom op (x, scale) -> x * scale with its gradient, x (N, C, H, W) and scale (N, C, 1, 1), float32."""
    library = build_library("channel_scale.cc", "channel_scale", {})
    backward = ops.Custom(f"{library}:channel_scale_backward", lambda x, s, _dout: (x, s),
                          lambda x, s, _dout: (x, s), func_type="aot")

    def bprop(x, scale, _out, dout):
        grad_x, grad_scale = backward(x, scale, dout)
        return grad_x, grad_scale

    return ops.Custom(f"{library}:channel_scale_forward", lambda x, _s: x, lambda x, _s: x, func_type="aot",
                      bprop=bprop)


class ChannelScale(ScaleChannels):
    """`ScaleChannels` (x times a (N, C, 1, 1) scale) in one kernel pass each way; a scale of any other shape (a
    broadcast over the batch) is MindSpore's product."""

    def __init__(self):
        super().__init__()
        self.custom = _channel_scale_op() if kernels_usable() else None

    def construct(self, x, scale):
        if self.custom is None or x.ndim != 4 or scale.shape != (x.shape[0], x.shape[1], 1, 1):
            return x * scale
        return self.custom(x, scale)

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it runs the (float32) kernels."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.custom is not None else flags))
