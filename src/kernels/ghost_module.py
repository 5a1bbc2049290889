"""`FusedGhostModule`: a Ghost module whose output, concat((intrinsic maps, cheap maps)), is written in place by
src/kernels instead of MindSpore's Concat:
- in training, by the cheap maps' BN kernel (batch_norm.cc, BN_CONCAT), where the Concat and the two Slices of its
  gradient passed over both halves again (3 launches and 6% of ghostnet_100's 224 px training step);
- in the inference form (BN folded, src/kernels' 1x1 and depthwise convs with bias), by one kernel that runs both
  convs (ghost_module.cc), where the two convs and the Concat were three launches of ~40 us at batch 1."""
import mindspore
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.batch_norm import BatchNorm2d
from src.kernels.build import ghost_module_library, keep_float32
from src.kernels.depthwise import DepthwiseConv2d
from src.kernels.pointwise import PointwiseConv2d
from src.models.layers import GhostModule
from src.surgery import adopt_cells


def _inference_ops(geometry):
    """Custom ops (x, w1, b1, w2, b2) -> concat((a, dw(a, w2) + b2)), a = conv1x1(x, w1) + b1, without and with the
    ReLU after each conv. Inference only: no gradient."""
    library = ghost_module_library(geometry)

    def out_shape(x, w1, _b1, _w2, _b2):
        return [x[0], 2 * w1[0], x[2], x[3]]

    return tuple(ops.Custom(f"{library}:{name}", out_shape, lambda x, *_: x, func_type="aot")
                 for name in ("ghost_forward", "ghost_forward_relu"))


def _only_identities(cells) -> bool:
    return all(type(cell) is nn.Identity for cell in cells)


class FusedGhostModule(GhostModule):
    """The `GhostModule` `module` (after the pass's swaps), holding its cells: same parameters, names and function.
    `fits(module)` says whether either fusion applies."""

    def __init__(self, module):
        nn.Cell.__init__(self)
        attention = ("short_conv",) if module.has_attention else ()
        adopt_cells(self, module, ("primary_conv", "cheap_operation") + attention)
        self.out_channels, self.needs_slice, self.has_attention = (module.out_channels, module.needs_slice,
                                                                   module.has_attention)
        self.concat_in_bn = self._concat_in_bn(module)
        if self.concat_in_bn:
            self.cheap_operation[1].enable_concat()
        self.inference = self.inference_relu = None
        if self._inference_form(module):
            self.inference, self.inference_relu = _inference_ops(module.cheap_operation[0].geometry)

    @staticmethod
    def _cheap_maps(module):
        """The cheap maps' (conv, BN, activation), or None when `module` cannot be fused at all."""
        if type(module) is not GhostModule or module.needs_slice or len(module.cheap_operation) != 3:
            return None
        return tuple(module.cheap_operation)

    @classmethod
    def _concat_in_bn(cls, module) -> bool:
        """Training: the cheap maps end in src/kernels' BN with the activation in it, or none after it."""
        cheap = cls._cheap_maps(module)
        return (cheap is not None and isinstance(cheap[0], nn.Conv2d) and type(cheap[1]) is BatchNorm2d
                and cheap[1].custom is not None and type(cheap[2]) is nn.Identity)

    @classmethod
    def _inference_form(cls, module) -> bool:
        """BN folded: src/kernels' 1x1 conv and stride-1 'same' depthwise conv, both with a bias, the same ReLU or
        none in each, and nothing else."""
        cheap = cls._cheap_maps(module)
        if cheap is None or len(module.primary_conv) != 3:
            return False
        pointwise, depthwise = module.primary_conv[0], cheap[0]
        if not (type(pointwise) is PointwiseConv2d and type(depthwise) is DepthwiseConv2d):
            return False
        kh, kw, sh, sw, ph, pw = depthwise.geometry
        return (pointwise.has_bias and depthwise.has_bias and pointwise.inference_bias is not None
                and depthwise.inference_bias is not None and pointwise.relu == depthwise.relu
                and (sh, sw) == (1, 1) and (kh, kw) == (2 * ph + 1, 2 * pw + 1)
                and _only_identities(list(module.primary_conv)[1:] + list(cheap[1:])))

    @classmethod
    def fits(cls, module) -> bool:
        return cls._concat_in_bn(module) or cls._inference_form(module)

    def construct(self, x):
        if self.inference is not None and not self.training:
            if x.dtype != mindspore.float32:  # the kernel is float32 only (an AMP-cast inference input)
                x = x.astype(mindspore.float32)
            pointwise, depthwise = self.primary_conv[0], self.cheap_operation[0]
            fused = self.inference_relu if pointwise.relu else self.inference
            out = fused(x, pointwise.weight, pointwise.bias, depthwise.weight, depthwise.bias)
        elif self.concat_in_bn:
            x1 = self.primary_conv(x)
            out = self.cheap_operation[1].concat_after(x1, self.cheap_operation[0](x1))
        else:
            x1 = self.primary_conv(x)
            out = ops.concat((x1, self.cheap_operation(x1)), 1)
        if self.has_attention:
            out = self.short_conv(x, out)
        return out

    def add_flags_recursive(self, **flags):
        """Mixed precision leaves this cell in float32 when it runs the (float32) inference kernel."""
        return super().add_flags_recursive(**(keep_float32(flags) if self.inference is not None else flags))
