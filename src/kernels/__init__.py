"""Hand-written CPU kernels for the ops MindSpore's CPU backend runs slowly (MindSpore AOT custom operators):
depthwise convolution, training-mode BatchNorm, the inference form's convs with bias and ReLU in one launch
(1x1: `pointwise.pointwise_inference_ops`, used by layers.PointwiseConv2d; depthwise: DepthwiseConv2d), and
one-launch operations over every gradient or parameter (the finiteness check, the EMA update). Cells fall back
to MindSpore's own ops off CPU, inside `custom_kernels(False)` (export) or when no compiler is available."""
from src.kernels.batch_norm import BatchNorm2d
from src.kernels.build import KernelBuildError, ReluAbsorbing, custom_kernels, kernels_usable
from src.kernels.depthwise import DepthwiseConv2d
from src.kernels.tensor_list import AllFinite, fused_ema_update

__all__ = ["AllFinite", "BatchNorm2d", "DepthwiseConv2d", "KernelBuildError", "ReluAbsorbing", "custom_kernels",
           "fused_ema_update", "kernels_usable"]
