"""Hand-written CPU kernels for the ops MindSpore's CPU backend runs slowly (MindSpore AOT custom operators):
depthwise convolution and training-mode BatchNorm. Cells fall back to MindSpore's own ops off CPU, inside
`custom_kernels(False)` (export) or when no compiler is available."""
from src.kernels.batch_norm import BatchNorm2d
from src.kernels.build import KernelBuildError, custom_kernels, kernels_usable
from src.kernels.depthwise import DepthwiseConv2d

__all__ = ["BatchNorm2d", "DepthwiseConv2d", "KernelBuildError", "custom_kernels", "kernels_usable"]
