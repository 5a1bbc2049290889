"""GhostNet v1 (Han et al., CVPR 2020): Ghost bottlenecks, the table-driven network and its variants.

Variants: `ghostnet_050`, `ghostnet_100`, `ghostnet_130` (width 0.5 / 1.0 / 1.3) and `ghostnet_100_nose` (1.0x
without SE). `GhostNet` also builds GhostNet-600 (its own table) and GhostNetV2 / V3 (this table). Child names
mirror the official / timm state_dict, so a PyTorch checkpoint converts key for key.

Options: `width` (channels rounded to multiples of 4), `drop_rate` (before the classifier, 0.2), `small_input`
(28-32 px images: stride-1 stem and first stride-2 stage, 8x downsampling instead of 32x; same weights).
"""
from collections import namedtuple

import mindspore.nn as nn

from src.models.base import ImageClassifier
from src.models.layers import (ConvBnAct, GhostModule, GlobalAvgPool, SqueezeExcite, activation, batch_norm, conv2d,
                               last_per_stride, make_divisible)
from src.models.registry import register_model

# One Ghost bottleneck, channels already rounded. `se` is the SE squeeze width (0: no SE); `attention`: DFC
# attention in ghost1 (GhostNetV2).
BlockSpec = namedtuple("BlockSpec", "kernel mid out se stride attention", defaults=(False,))


class GhostBottleneck(nn.Cell):
    """ghost1 (act) -> [depthwise conv + BN when strided] -> [SE] -> ghost2 (linear), plus a shortcut.

    The shortcut is the identity when shape is kept, otherwise depthwise k x k (strided) + BN + 1x1 conv + BN.
    No activation follows the residual add. `attention` gives ghost1 DFC attention (GhostNetV2). GhostNetV3
    subclasses this block with its own `ghost_module` class and strided depthwise stage (`_build_depthwise`,
    `_depthwise`).
    """

    ghost_module = GhostModule

    def __init__(self, in_channels, mid_channels, out_channels, dw_kernel_size=3, stride=1, se_channels=0,
                 act="relu", attention=False):
        super().__init__()
        self.ghost1 = self.ghost_module(in_channels, mid_channels, act=act, attention=attention)
        self.has_dw = stride > 1
        if self.has_dw:
            self._build_depthwise(mid_channels, dw_kernel_size, stride)
        self.has_se = se_channels > 0
        if self.has_se:
            self.se = SqueezeExcite(mid_channels, se_channels)
        self.ghost2 = self.ghost_module(mid_channels, out_channels, act=None)
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.SequentialCell([
                conv2d(in_channels, in_channels, dw_kernel_size, stride, groups=in_channels),
                batch_norm(in_channels),
                conv2d(in_channels, out_channels, 1),
                batch_norm(out_channels),
            ])

    def _build_depthwise(self, channels, kernel_size, stride):
        self.conv_dw = conv2d(channels, channels, kernel_size, stride, groups=channels)
        self.bn_dw = batch_norm(channels)

    def _depthwise(self, x):
        return self.bn_dw(self.conv_dw(x))

    def construct(self, x):
        out = self.ghost1(x)
        if self.has_dw:
            out = self._depthwise(out)
        if self.has_se:
            out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x)


class GhostNet(ImageClassifier):
    """Stem -> stages of Ghost bottlenecks -> 1x1 ConvBnAct (`blocks[-1]`) -> pool -> conv_head -> classifier.

    `stages` is a list of stages, each a list of `BlockSpec`; stage i becomes `blocks.i`, made of `block` cells.
    `num_features` is the channel count of `forward_features`; `head_hidden_size` the width of
    `forward_head(x, pre_logits=True)`.
    """

    def __init__(self, stages, stem_channels, final_channels, head_channels=1280, num_classes=1000, in_channels=3,
                 act="relu", drop_rate=0.2, small_input=False, block=GhostBottleneck):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = final_channels
        self.head_hidden_size = head_channels
        stages = _for_small_input(stages) if small_input else stages

        stem_stride = 1 if small_input else 2
        self.conv_stem = conv2d(in_channels, stem_channels, 3, stem_stride)
        self.bn1 = batch_norm(stem_channels)
        self.act1 = activation(act)

        cells, reductions = [], []
        prev, reduction = stem_channels, stem_stride
        for stage in stages:
            blocks = []
            for spec in stage:
                blocks.append(block(prev, spec.mid, spec.out, spec.kernel, spec.stride, spec.se, act, spec.attention))
                prev, reduction = spec.out, reduction * spec.stride
            cells.append(nn.SequentialCell(blocks))
            reductions.append(reduction)
        cells.append(nn.SequentialCell([ConvBnAct(prev, final_channels, 1, act=act)]))
        reductions.append(reduction)
        self.blocks = nn.SequentialCell(cells)

        channels = [s[-1].out for s in stages] + [final_channels]
        self._feature_idx = last_per_stride(reductions)
        self.feature_info = [dict(num_chs=channels[i], reduction=reductions[i], module=f"blocks.{i}")
                             for i in self._feature_idx]

        self.global_pool = GlobalAvgPool()
        self.conv_head = conv2d(final_channels, head_channels, 1, bias=True)
        self.act2 = activation(act)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x):
        return self.blocks(self._stem(x))

    def forward_head(self, x, pre_logits=False):
        x = self.flatten(self.act2(self.conv_head(self.global_pool(x))))
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))


def _for_small_input(stages):
    """Make the first strided stage stride 1 (the stem's stride is handled by the caller)."""
    stages = [list(stage) for stage in stages]
    for stage in stages:
        for j, spec in enumerate(stage):
            if spec.stride > 1:
                stage[j] = spec._replace(stride=1)
                return stages
    return stages


# kernel, expansion, out, SE ratio, stride. One inner tuple per entry of the official / timm `blocks` list.
_V1_TABLE = (
    ((3, 16, 16, 0, 1),),
    ((3, 48, 24, 0, 2),),
    ((3, 72, 24, 0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0, 2),),
    ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
)


def build_ghostnet(width=1.0, se=True, attention=False, block=GhostBottleneck, num_classes=1000, in_channels=3,
                drop_rate=0.2, small_input=False):
    """A GhostNet on the v1 block table at any width, also GhostNetV2's (`attention=True`: DFC attention in ghost1 of
    every bottleneck but the first two) and V3's (`block`); `se=False` drops every SE module."""
    stages, index = [], 0
    for stage in _V1_TABLE:
        specs = []
        for k, exp, out, se_ratio, stride in stage:
            mid = make_divisible(exp * width, 4)
            se_channels = make_divisible(mid * se_ratio, 4) if se and se_ratio > 0 else 0
            specs.append(BlockSpec(k, mid, make_divisible(out * width, 4), se_channels, stride,
                                   attention=attention and index > 1))
            index += 1
        stages.append(specs)
    return GhostNet(stages, stem_channels=make_divisible(16 * width, 4),
                    final_channels=make_divisible(960 * width, 4), num_classes=num_classes,
                    in_channels=in_channels, drop_rate=drop_rate, small_input=small_input, block=block)


_SOURCE = "CVPR 2020 paper; params and MACs measured on timm 1.0.31"


@register_model("ghostnet", reference=dict(params=2_587_292, macs=42.33e6, top1=66.2, source=_SOURCE))
def ghostnet_050(num_classes=1000, in_channels=3, width=0.5, **options):
    return build_ghostnet(width, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnet", reference=dict(params=5_182_508, macs=141.15e6, top1=73.9, source=_SOURCE))
def ghostnet_100(num_classes=1000, in_channels=3, width=1.0, **options):
    return build_ghostnet(width, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnet", reference=dict(params=7_358_820, macs=227.00e6, top1=75.7, source=_SOURCE))
def ghostnet_130(num_classes=1000, in_channels=3, width=1.3, **options):
    return build_ghostnet(width, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnet", reference=dict(macs=138e6, source="CVPR 2020 paper, Ghost-1x without SE "
                                                               "(FLOPs; accuracy reported on Oxford-IIIT Pet only)"))
def ghostnet_100_nose(num_classes=1000, in_channels=3, width=1.0, **options):
    return build_ghostnet(width, se=False, num_classes=num_classes, in_channels=in_channels, **options)
