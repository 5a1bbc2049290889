"""`ConcatGhostModule`: a Ghost module whose output, concat((intrinsic maps, cheap maps)), is written by its cheap
maps' BN kernel (src/kernels/batch_norm.cc, BN_CONCAT) in training, where MindSpore's Concat and the two Slices of
its gradient passed over both halves again (3 launches and 6% of ghostnet_100's 224 px training step)."""
import mindspore.nn as nn

from src.kernels.batch_norm import BatchNorm2d
from src.models.layers import GhostModule


class ConcatGhostModule(GhostModule):
    """The `GhostModule` `module`, holding its cells (same parameters, names and function)."""

    def __init__(self, module):
        nn.Cell.__init__(self)  # the cells are `module`'s: nothing is built or drawn
        names = {id(param): param.name for param in module.get_parameters()}
        self.out_channels = module.out_channels
        self.needs_slice = module.needs_slice
        self.has_attention = module.has_attention
        self.primary_conv = module.primary_conv
        self.cheap_operation = module.cheap_operation
        if module.has_attention:
            self.short_conv = module.short_conv
        for param in self.get_parameters():  # attaching the cells renamed them relative to this one
            param.name = names[id(param)]
        self.cheap_operation[1].enable_concat()

    @staticmethod
    def fits(module) -> bool:
        """Whether `module` (after the pass's swaps) can run so: its cheap maps are a conv then src/kernels' BN with
        the activation in it or none after it, and the concatenation is the output, not cut."""
        if type(module) is not GhostModule or module.needs_slice or len(module.cheap_operation) != 3:
            return False
        conv, bn, act = module.cheap_operation
        return (isinstance(conv, nn.Conv2d) and type(bn) is BatchNorm2d and bn.custom is not None
                and type(act) is nn.Identity)

    def construct(self, x):
        x1 = self.primary_conv(x)
        out = self.cheap_operation[1].concat_after(x1, self.cheap_operation[0](x1))
        if self.has_attention:
            out = self.short_conv(x, out)
        return out
