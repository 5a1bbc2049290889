"""`FusedGhostBottleneck`: a GhostNet bottleneck whose inference form (BN folded, its Ghost modules each in one
kernel) runs in one launch of ghost_bottleneck.cc (see that file for why): both Ghost modules, the strided depthwise
conv, the SE block, the shortcut's convs and the residual Add."""
import mindspore
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.build import ghost_bottleneck_library, keep_float32
from src.kernels.depthwise import DepthwiseConv2d
from src.kernels.ghost_module import FusedGhostModule
from src.kernels.pointwise import PointwiseConv2d
from src.kernels.squeeze_excite import FusedSqueezeExcite
from src.models.ghostnet import GhostBottleneck
from src.surgery import adopt_cells


def _inference_op(block):
    """The custom op (x, the block's weights and biases in ghost_bottleneck.cc's order, x in place of those it lacks)
    -> the block's output."""
    cheap = block.ghost1.cheap_operation[0].geometry
    depthwise = _block_depthwise(block)
    kh, kw, sh, sw, ph, pw = depthwise.geometry if depthwise is not None else cheap
    library = ghost_bottleneck_library(cheap, (kh, kw, sh, sw, ph, pw))
    name = "bottleneck" + "_dw" * block.has_dw + "_se" * block.has_se + "_proj" * _has_projection(block)
    strided = block.has_dw or _has_projection(block)

    def out_shape(x, *weights):  # weights[10]: ghost2's 1x1 conv weight (see construct)
        h, w = ((x[2] + 2 * ph - kh) // sh + 1, (x[3] + 2 * pw - kw) // sw + 1) if strided else (x[2], x[3])
        return [x[0], 2 * weights[10][0], h, w]

    return ops.Custom(f"{library}:{name}", out_shape, lambda x, *_: x, func_type="aot")


def _has_projection(block) -> bool:
    return type(block.shortcut) is not nn.Identity


def _block_depthwise(block):
    """The depthwise conv whose geometry is the library's second: the strided one, else the shortcut's."""
    if block.has_dw:
        return block.conv_dw
    return block.shortcut[0] if _has_projection(block) else None


def _linear_kernel_conv(conv, kind) -> bool:
    """`conv` is src/kernels' `kind` conv in its inference form with no ReLU."""
    return type(conv) is kind and conv.has_bias and conv.inference_bias is not None and not conv.relu


class FusedGhostBottleneck(GhostBottleneck):
    """The `GhostBottleneck` `block` (after the pass's swaps and fusions), holding its cells: same parameters, names
    and function; in eval mode the kernel, in training (or with `inference` set to None) the cells."""

    def __init__(self, block):
        nn.Cell.__init__(self)
        names = ("ghost1", "ghost2", "shortcut") + ("conv_dw", "bn_dw") * block.has_dw + ("se",) * block.has_se
        adopt_cells(self, block, names)
        self.has_dw, self.has_se, self.has_projection = block.has_dw, block.has_se, _has_projection(block)
        self.inference = _inference_op(block)

    @staticmethod
    def fits(block) -> bool:
        """Exactly GhostNet's bottleneck (not a subclass), in the inference form: Ghost modules in one kernel each,
        the first with its ReLU and the second without; the strided conv and the shortcut's convs src/kernels'
        with a bias and nothing after them; the SE block in one kernel; one geometry for the block's depthwise
        convs."""
        if type(block) is not GhostBottleneck:
            return False
        ghosts = (block.ghost1, block.ghost2)
        if not all(type(g) is FusedGhostModule and g.inference is not None and not g.has_attention for g in ghosts):
            return False
        if not block.ghost1.primary_conv[0].relu or block.ghost2.primary_conv[0].relu:
            return False
        if block.ghost1.cheap_operation[0].geometry != block.ghost2.cheap_operation[0].geometry:
            return False
        if block.has_dw and not (_linear_kernel_conv(block.conv_dw, DepthwiseConv2d)
                                 and type(block.bn_dw) is nn.Identity):
            return False
        if block.has_se and type(block.se) is not FusedSqueezeExcite:
            return False
        if _has_projection(block):
            cells = list(block.shortcut)
            if not (len(cells) == 4 and _linear_kernel_conv(cells[0], DepthwiseConv2d)
                    and _linear_kernel_conv(cells[2], PointwiseConv2d)
                    and type(cells[1]) is nn.Identity and type(cells[3]) is nn.Identity):
                return False
            if block.has_dw and cells[0].geometry != block.conv_dw.geometry:
                return False
        return True

    def construct(self, x):
        if self.training or self.inference is None:
            return super().construct(x)
        if x.dtype != mindspore.float32:  # the kernel is float32 only (an AMP-cast inference input)
            x = x.astype(mindspore.float32)
        g1, g2 = _ghost_weights(self.ghost1), _ghost_weights(self.ghost2)
        dw, se, shortcut = (x, x), (x, x, x, x), (x, x, x, x)  # x stands in for the parts the block lacks
        if self.has_dw:
            dw = (self.conv_dw.weight, self.conv_dw.bias)
        if self.has_se:
            se = (self.se.conv_reduce.weight, self.se.conv_reduce.bias, self.se.conv_expand.weight,
                  self.se.conv_expand.bias)
        if self.has_projection:
            shortcut = (self.shortcut[0].weight, self.shortcut[0].bias, self.shortcut[2].weight, self.shortcut[2].bias)
        # every argument written out: a starred call would lose this cell's scope in graph mode (profiles by cell)
        return self.inference(x, g1[0], g1[1], g1[2], g1[3], dw[0], dw[1], se[0], se[1], se[2], se[3],
                              g2[0], g2[1], g2[2], g2[3], shortcut[0], shortcut[1], shortcut[2], shortcut[3])

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 (its eval-mode kernel is float32 only)."""
        return super().add_flags_recursive(**keep_float32(flags))


def _ghost_weights(module):
    pointwise, depthwise = module.primary_conv[0], module.cheap_operation[0]
    return (pointwise.weight, pointwise.bias, depthwise.weight, depthwise.bias)
