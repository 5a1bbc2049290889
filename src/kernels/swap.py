"""The CPU speed-up pass: `accelerate(net, sample)` swaps a built network's MindSpore cells for their CPU forms
in place (src/surgery.py), recognising them by type: depthwise, 1x1 stride-1 and few-input-channel (stem)
`nn.Conv2d`, `nn.BatchNorm2d`, `nn.Dense`, `src.models.GlobalAvgPool` / `ScaleChannels`, and a ReLU that alone reads
one of those outputs (fused into it); then Ghost modules write their concatenation in place (ghost_module.py): from
the cheap maps' BN kernel in training, from one kernel running both convs in the inference form; an SE block runs
in one kernel in eval mode; and in the inference form a GhostNet bottleneck runs in one kernel (ghost_bottleneck.py).

Each form subclasses the cell it replaces, computes its function and takes over its Parameter objects, so names,
values, checkpoints and the random initialisation stay the plain model's: run it before building the optimizer.
"""
import mindspore.nn as nn

from src.kernels.batch_norm import BatchNorm2d
from src.kernels.depthwise import STEM_MAX_CHANNELS, DepthwiseConv2d, StemConv2d
from src.kernels.ghost_bottleneck import FusedGhostBottleneck
from src.kernels.ghost_module import FusedGhostModule
from src.kernels.channel_scale import ChannelScale
from src.kernels.matmul import MatMulGlobalAvgPool
from src.kernels.pointwise import KernelDense, PointwiseConv2d
from src.kernels.squeeze_excite import FusedSqueezeExcite
from src.models import GlobalAvgPool, ScaleChannels
from src.surgery import Trace, clear_compile_caches, replace_cell

# A bottleneck fuses what the first stage fused inside it.
_FUSION_STAGES = ((FusedGhostModule, FusedSqueezeExcite), (FusedGhostBottleneck,))
_NO_INIT = dict(weight_init="zeros", bias_init="zeros")  # replaced by the plain cell's Parameters: no random draws


def accelerate(net, sample):
    """`net` with its cells swapped for their CPU forms, in place (see the module docstring); returns `net`.

    `sample`: an input batch of the shape the network will see (traced once in PyNative eval mode; values do not
    matter). Cells already swapped are left alone, so a second call changes nothing.
    """
    trace = Trace(net, sample)
    cells = dict(net.cells_and_names())
    relus = {}
    for name, cell in cells.items():
        reader = trace.only_reader(name)
        if type(cells.get(reader)) is nn.ReLU:  # exactly: a subclass may compute something else
            relus[name] = reader
    for name, cell in cells.items():
        fast = _fast_form(cell, name in relus)
        if fast is None:
            continue
        for key, param in cell.parameters_and_names(expand=False):
            setattr(fast, key, param)
        replace_cell(net, name, fast)
        if getattr(fast, "relu", False):
            replace_cell(net, relus[name], nn.Identity())
    for fusions in _FUSION_STAGES:  # fusions over the swapped cells, a stage over the one before it
        for name, cell in list(net.cells_and_names()):
            for fused in fusions:
                if fused.fits(cell):
                    replace_cell(net, name, fused(cell))
    clear_compile_caches(net)
    return net


def _fast_form(cell, relu):
    """The CPU form of `cell` (parameters still to be taken over), or None when it has none. `relu`: a ReLU cell
    alone reads its output (a BN or conv form then applies it)."""
    if type(cell) is GlobalAvgPool:
        return MatMulGlobalAvgPool(cell.keep_dims)
    if type(cell) is ScaleChannels:
        return ChannelScale()
    if type(cell) is nn.Dense and not cell.activation_flag:
        return KernelDense(cell.in_channels, cell.out_channels, cell.has_bias, **_NO_INIT)
    if type(cell) is nn.BatchNorm2d and cell.use_batch_statistics is None and cell.format == "NCHW":
        # nn.BatchNorm2d stores 1 - its momentum argument (the batch's weight) as `momentum`
        return BatchNorm2d(cell.num_features, eps=cell.eps, momentum=1.0 - cell.momentum, relu=relu)
    if type(cell) is not nn.Conv2d or cell.data_format != "NCHW" or tuple(cell.dilation) not in ((1, 1), (1, 1, 1, 1)):
        return None
    padding = _explicit_padding(cell)
    if cell.group > 1 and cell.group == cell.in_channels == cell.out_channels and padding is not None:
        return DepthwiseConv2d(cell.in_channels, cell.kernel_size, cell.stride, padding, cell.has_bias, relu,
                               **_NO_INIT)
    one_by_one = tuple(cell.kernel_size) == (1, 1) and tuple(cell.stride) == (1, 1)
    if cell.group == 1 and one_by_one and padding in (0, (0,) * 4):
        return PointwiseConv2d(cell.in_channels, cell.out_channels, cell.has_bias, relu, **_NO_INIT)
    if cell.group == 1 and cell.in_channels <= STEM_MAX_CHANNELS and padding is not None:
        return StemConv2d(cell.in_channels, cell.out_channels, cell.kernel_size, cell.stride, padding, cell.has_bias,
                          relu, **_NO_INIT)
    return None


def _explicit_padding(conv):
    """`conv`'s padding as pad_mode 'pad' takes it (an int or (top, bottom, left, right)), or None for a 'same'
    padding that depends on the input size."""
    if conv.pad_mode == "pad":
        return conv.padding
    if conv.pad_mode == "valid":
        return 0
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if (sh, sw) != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
        return None
    return (kh // 2, kh // 2, kw // 2, kw // 2)
