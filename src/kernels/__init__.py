"""Hand-written CPU kernels for the ops MindSpore's CPU backend runs slowly (MindSpore AOT custom operators), the
cells that run them, and the pass that puts those cells into a built network (`accelerate`, swap.py):
depthwise convolution and dense convs with few input channels (stems), training-mode BatchNorm (+ ReLU), 1x1 convs
(a MatMul in training, conv + bias (+ ReLU) in one launch in inference), a MatMul form of global pooling, SE's
channel scaling in one pass each way, and one-launch operations over every gradient or parameter (the finiteness
check, the EMA update). Cells fall back to MindSpore's own ops off CPU or when no compiler is available."""
from src.kernels.swap import accelerate
from src.kernels.batch_norm import BatchNorm2d
from src.kernels.build import KernelBuildError, kernels_usable
from src.kernels.channel_scale import ChannelScale
from src.kernels.depthwise import DepthwiseConv2d, StemConv2d
from src.kernels.pointwise import PointwiseConv2d
from src.kernels.tensor_list import AllFinite, fused_copy, fused_ema_update

__all__ = ["AllFinite", "BatchNorm2d", "ChannelScale", "DepthwiseConv2d", "KernelBuildError", "PointwiseConv2d",
           "StemConv2d", "accelerate", "fused_copy", "fused_ema_update", "kernels_usable"]
