"""The CPU speed-up pass: `accelerate(net, sample)` swaps a built network's plain MindSpore cells for their fast CPU
forms in place, with the cell-swapping mechanism BN folding uses (src/models/rewrite.py).

- depthwise `nn.Conv2d` -> `DepthwiseConv2d` (C++ kernels; its padding made explicit);
- 1x1 stride-1 `nn.Conv2d` -> `PointwiseConv2d` (MatMul on 1x1 maps in training, C++ conv + bias in inference);
- `nn.BatchNorm2d` -> `kernels.BatchNorm2d` (C++ kernels with batch statistics);
- `GlobalAvgPool` / `ScaleChannels` of src/models/layers.py -> their MatMul forms;
- a ReLU cell that alone reads one of those BNs' or convs' output (looking through `nn.Identity`, a folded BN's
  place) runs inside that cell, in the kernel's own pass where there is one, and becomes `nn.Identity`.

Every swapped cell holds the plain cell's Parameter objects (same names, same values), and no parameter is created
or drawn at random: run the pass after building the model and before building the optimizer and EMA, which then see
the parameters the network uses, and the random initialisation is that of the plain model. Each form computes what
the plain cell does, so checkpoints and results do not depend on the pass (up to float rounding: the MatMul forms sum
in another order). The inference form for CPU latency is `prepare_for_inference` (src/deploy) and then this pass;
export never runs it, so a MINDIR / ONNX file holds MindSpore's own ops only.
"""
import mindspore.nn as nn

from src.kernels.batch_norm import BatchNorm2d
from src.kernels.depthwise import DepthwiseConv2d
from src.kernels.matmul import MatMulGlobalAvgPool, MatMulScaleChannels
from src.kernels.pointwise import PointwiseConv2d
from src.models.layers import GlobalAvgPool, ScaleChannels
from src.models.rewrite import Trace, clear_compile_caches, replace_cell

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
    clear_compile_caches(net)
    return net


def _fast_form(cell, relu):
    """The CPU form of `cell` (parameters still to be taken over), or None when it has none. `relu`: a ReLU cell
    alone reads its output (a BN or conv form then applies it)."""
    if type(cell) is GlobalAvgPool:
        return MatMulGlobalAvgPool(cell.keep_dims)
    if type(cell) is ScaleChannels:
        return MatMulScaleChannels()
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
