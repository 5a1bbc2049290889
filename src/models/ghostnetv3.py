"""GhostNetV3 (Liu et al., 2024): GhostNetV2 trained with re-parameterisable branches and deployed as GhostNetV2.

Variants: `ghostnetv3_050`, `ghostnetv3_100`, `ghostnetv3_130`, `ghostnetv3_160` (width 0.5 / 1.0 / 1.3 / 1.6),
built in training form: a Ghost module's primary 1x1 conv is `BRANCHES` conv-BN branches, its cheap depthwise conv
`BRANCHES` branches + a 1x1 `scale` branch + a BN `skip` branch, a strided block's depthwise conv `BRANCHES`
branches + a `scale` branch. `reparameterize()` (src.deploy.reparameterize calls it on every cell) fuses each sum,
in eval mode, into one conv with a bias. Child names follow timm's in both forms, so timm checkpoints of either
convert key for key. Options as for GhostNet v1.
"""
import numpy as np
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Tensor

from src.models.ghostnet import GhostBottleneck, build_ghostnet
from src.models.layers import ConvBnAct, DFCAttention, activation, batch_norm, conv2d, folded_batchnorm
from src.models.registry import register_model

BRANCHES = 3  # parallel conv-BN branches per re-parameterisable conv, as in the official code


def _conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1):
    return ConvBnAct(in_channels, out_channels, kernel_size, stride, groups, act=None)


def _fused_conv(convs, scale=None, skip=None):
    """One conv with bias that computes, in eval mode, the sum of the conv-BN branches `convs`, a 1x1 conv-BN
    `scale` branch (its kernel placed at the centre) and a BN `skip` branch (an identity kernel)."""
    template = convs[0].conv
    size = template.kernel_size[0]
    branches = [(branch.conv.weight.asnumpy(), branch.bn1) for branch in convs]
    if scale is not None:
        branches.append((scale.conv.weight.asnumpy(), scale.bn1))
    if skip is not None:
        identity = np.zeros(template.weight.shape, np.float32)
        channels = np.arange(template.out_channels)
        identity[channels, channels % identity.shape[1], size // 2, size // 2] = 1.0
        branches.append((identity, skip))
    weight, bias = 0.0, 0.0
    for kernel, bn in branches:
        kernel, branch_bias = folded_batchnorm(kernel.astype(np.float64), 0.0, bn)
        pad = (size - kernel.shape[-1]) // 2
        weight = weight + np.pad(kernel, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        bias = bias + branch_bias
    conv = conv2d(template.in_channels, template.out_channels, size, template.stride[0], template.group, bias=True)
    conv.weight.set_data(Tensor(weight.astype(np.float32)))
    conv.bias.set_data(Tensor(bias.astype(np.float32)))
    return conv


def _swap_children(cell, new, old):
    """Give `cell` the children `new` (name -> cell) in place of those named in `old`.

    MindSpore names a parameter when its cell is attached, relative to that parent only; the new parameters are
    renamed with their full path in the network (read off the names `cell`'s parameters carry), so checkpoints
    and compiled graphs see unique, timm-style names.
    """
    relative, param = next(cell.parameters_and_names())
    prefix = param.name[: len(param.name) - len(relative)]
    for name in old:
        delattr(cell, name)
    for name, child in new.items():
        setattr(cell, name, child)
        child.update_parameters_name(f"{prefix}{name}.")


class GhostModuleV3(nn.Cell):
    """Ghost module (1x1 primary conv, ratio 2, 3x3 cheap depthwise conv) in training form, branches summed
    before each activation; `attention` adds DFC attention as in `GhostModule`.

    `reparameterize()` turns it into `GhostModule`'s layout without BN: `primary_conv` and `cheap_operation` are
    each a conv with bias followed by the activation.
    """

    deployed = False  # set by reparameterize()

    def __init__(self, in_channels, out_channels, act="relu", attention=False):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"GhostModuleV3 needs an even out_channels (ratio 2), got {out_channels}")
        channels = out_channels // 2  # intrinsic maps, and as many ghosts: the skip branch is an identity
        self.primary_rpr_conv = nn.CellList([_conv_bn(in_channels, channels, 1) for _ in range(BRANCHES)])
        self.primary_activation = activation(act)
        self.cheap_rpr_skip = batch_norm(channels)
        self.cheap_rpr_conv = nn.CellList([_conv_bn(channels, channels, 3, groups=channels)
                                           for _ in range(BRANCHES)])
        self.cheap_rpr_scale = _conv_bn(channels, channels, 1, groups=channels)
        self.cheap_activation = activation(act)
        self.has_attention = attention
        if attention:
            self.short_conv = DFCAttention(in_channels, out_channels)

    def construct(self, x):
        if self.deployed:
            x1 = self.primary_conv(x)
            x2 = self.cheap_operation(x1)
        else:
            x1 = self.primary_activation(ops.addn([conv(x) for conv in self.primary_rpr_conv]))
            x2 = self.cheap_activation(ops.addn([conv(x1) for conv in self.cheap_rpr_conv]
                                                + [self.cheap_rpr_scale(x1), self.cheap_rpr_skip(x1)]))
        out = ops.concat((x1, x2), 1)
        if self.has_attention:
            out = self.short_conv(x, out)
        return out

    def reparameterize(self):
        """Fuse the branches with their BN running statistics, in place (eval-mode outputs are kept)."""
        if self.deployed:
            return
        primary = nn.SequentialCell([_fused_conv(self.primary_rpr_conv), self.primary_activation])
        cheap = nn.SequentialCell([_fused_conv(self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip),
                                   self.cheap_activation])
        _swap_children(self, dict(primary_conv=primary, cheap_operation=cheap),
                       ("primary_rpr_conv", "primary_activation", "cheap_rpr_skip", "cheap_rpr_conv",
                        "cheap_rpr_scale", "cheap_activation"))
        self.deployed = True


class GhostBottleneckV3(GhostBottleneck):
    """Ghost bottleneck of `GhostModuleV3`s whose strided depthwise conv trains as `BRANCHES` depthwise conv-BN
    branches + a 1x1 depthwise conv-BN; `reparameterize()` fuses them into `conv_dw` with bias (no `bn_dw`)."""

    ghost_module = GhostModuleV3
    deployed = False  # set by reparameterize()

    def _build_depthwise(self, channels, kernel_size, stride):
        self.dw_rpr_conv = nn.CellList([_conv_bn(channels, channels, kernel_size, stride, channels)
                                        for _ in range(BRANCHES)])
        self.dw_rpr_scale = _conv_bn(channels, channels, 1, stride, channels)

    def _depthwise(self, x):
        if self.deployed:
            return self.conv_dw(x)
        return ops.addn([conv(x) for conv in self.dw_rpr_conv] + [self.dw_rpr_scale(x)])

    def reparameterize(self):
        """Fuse the strided depthwise branches in place (the Ghost modules fuse themselves)."""
        if self.has_dw and not self.deployed:
            _swap_children(self, dict(conv_dw=_fused_conv(self.dw_rpr_conv, self.dw_rpr_scale)),
                           ("dw_rpr_conv", "dw_rpr_scale"))
            self.deployed = True


def ghostnet_v3(width=1.0, **options):
    """GhostNetV3 at any width, in training form."""
    return build_ghostnet(width, attention=True, block=GhostBottleneckV3, **options)


# params / MACs: the training form create_model builds; deployed_*: after reparameterize() (the paper's sizes).
_SOURCE = "GhostNetV3 paper (2024; top-1 with 600 epochs of distillation); params and MACs measured on timm 1.0.31"


@register_model("ghostnetv3", reference=dict(params=3_395_384, macs=117.53e6, deployed_params=2_853_176,
                                             deployed_macs=49.64e6, source=_SOURCE))
def ghostnetv3_050(num_classes=1000, in_channels=3, width=0.5, **options):
    return ghostnet_v3(width, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnetv3", reference=dict(params=8_129_028, macs=404.13e6, deployed_params=6_147_588,
                                             deployed_macs=167.05e6, top1=77.1, source=_SOURCE))
def ghostnetv3_100(num_classes=1000, in_channels=3, width=1.0, **options):
    return ghostnet_v3(width, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnetv3", reference=dict(params=12_217_720, macs=654.84e6, deployed_params=8_948_296,
                                             deployed_macs=269.32e6, top1=79.1, source=_SOURCE))
def ghostnetv3_130(num_classes=1000, in_channels=3, width=1.3, **options):
    return ghostnet_v3(width, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnetv3", reference=dict(params=17_275_700, macs=971.57e6, deployed_params=12_377_778,
                                             deployed_macs=398.61e6, source=_SOURCE))
def ghostnetv3_160(num_classes=1000, in_channels=3, width=1.6, **options):
    return ghostnet_v3(width, num_classes=num_classes, in_channels=in_channels, **options)
