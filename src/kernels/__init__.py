"""Hand-written CPU kernels for the ops MindSpore's CPU backend runs slowly (MindSpore AOT custom operators)."""
from src.kernels.depthwise import DepthwiseConv2d, KernelBuildError, custom_kernels, kernels_usable

__all__ = ["DepthwiseConv2d", "KernelBuildError", "custom_kernels", "kernels_usable"]
