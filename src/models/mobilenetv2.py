"""MobileNetV2 (Sandler et al., 2018), a baseline GhostNet is compared against (Pets table, speed plots).

Built to match timm's `mobilenetv2_100` one to one: same layers, same state_dict keys (`conv_stem`, `bn1`,
`blocks.i.j.conv_pw` ..., `conv_head`, `bn2`, `classifier`), 3,504,872 params and 300.77M MACs at 224.
The two blocks here are shared with MobileNetV3, which is MobileNetV2's inverted residual plus SE and
hard-swish.
"""
import mindspore.nn as nn

from src.models.base import ImageClassifier
from src.models.layers import (GlobalAvgPool, SqueezeExcite, activation, batch_norm, conv2d, last_per_stride,
                               make_divisible)
from src.models.registry import register_model


class DepthwiseSeparable(nn.Cell):
    """dw conv -> BN -> act -> [SE] -> 1x1 conv -> BN, no activation at the end (timm's `ds` block).

    The first block of both MobileNets: no expansion conv since its input is already narrow.
    """

    def __init__(self, in_chs, out_chs, kernel_size=3, stride=1, act="relu6", se_chs=0):
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = conv2d(in_chs, in_chs, kernel_size, stride, groups=in_chs)
        self.bn1 = batch_norm(in_chs)
        self.act1 = activation(act)
        self.se = SqueezeExcite(in_chs, se_chs) if se_chs else nn.Identity()
        self.conv_pw = conv2d(in_chs, out_chs, 1)
        self.bn2 = batch_norm(out_chs)

    def construct(self, x):
        out = self.se(self.act1(self.bn1(self.conv_dw(x))))
        out = self.bn2(self.conv_pw(out))
        if self.has_skip:
            out = out + x
        return out


class InvertedResidual(nn.Cell):
    """1x1 expand -> BN -> act -> dw conv -> BN -> act -> [SE] -> 1x1 linear projection -> BN (timm's `ir` block).

    The projection has no activation (a ReLU on the narrow output destroys information, the paper argues);
    identity shortcut when stride is 1 and the width is unchanged.
    """

    def __init__(self, in_chs, mid_chs, out_chs, kernel_size=3, stride=1, act="relu6", se_chs=0):
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = conv2d(in_chs, mid_chs, 1)
        self.bn1 = batch_norm(mid_chs)
        self.act1 = activation(act)
        self.conv_dw = conv2d(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs)
        self.bn2 = batch_norm(mid_chs)
        self.act2 = activation(act)
        self.se = SqueezeExcite(mid_chs, se_chs) if se_chs else nn.Identity()
        self.conv_pwl = conv2d(mid_chs, out_chs, 1)
        self.bn3 = batch_norm(out_chs)

    def construct(self, x):
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.se(self.act2(self.bn2(self.conv_dw(out))))
        out = self.bn3(self.conv_pwl(out))
        if self.has_skip:
            out = out + x
        return out


# One row per stage, as in the paper's table: expansion t, out channels c, repeats n, first stride s.
MOBILENETV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(ImageClassifier):
    """MobileNetV2 with ReLU6, a 32-channel stem and a 1x1 conv + BN head to 1280 features before pooling.

    `small_input` makes the stem and the first stride-2 stage stride 1, so a 32 px image ends at 4x4, not 1x1.
    """

    def __init__(self, num_classes=1000, in_channels=3, stem_chs=32, num_features=1280, drop_rate=0.2,
                 small_input=False, stages=MOBILENETV2_STAGES):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = num_features
        self.drop_rate = drop_rate
        stem_stride = 1 if small_input else 2
        self.conv_stem = conv2d(in_channels, stem_chs, 3, stem_stride)
        self.bn1 = batch_norm(stem_chs)
        self.act1 = activation("relu6")

        reduction, reductions, channels = stem_stride, [], []
        skip_downsample = small_input
        in_chs = stem_chs
        blocks = []
        for expansion, out_chs, repeats, stride in stages:
            if stride > 1 and skip_downsample:
                stride, skip_downsample = 1, False
            reduction *= stride
            reductions.append(reduction)
            channels.append(out_chs)
            stage = []
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                if expansion == 1:
                    stage.append(DepthwiseSeparable(in_chs, out_chs, 3, block_stride))
                else:
                    mid_chs = make_divisible(in_chs * expansion, 8)
                    stage.append(InvertedResidual(in_chs, mid_chs, out_chs, 3, block_stride))
                in_chs = out_chs
            blocks.append(nn.SequentialCell(stage))
        self.blocks = nn.SequentialCell(blocks)
        self._feature_idx = last_per_stride(reductions)
        self.feature_info = [dict(num_chs=channels[i], reduction=reductions[i], module=f"blocks.{i}")
                             for i in self._feature_idx]

        self.conv_head = conv2d(in_chs, num_features, 1)
        self.bn2 = batch_norm(num_features)
        self.act2 = activation("relu6")
        self.global_pool = GlobalAvgPool(keep_dims=False)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x):
        x = self.blocks(self._stem(x))
        return self.act2(self.bn2(self.conv_head(x)))

    def forward_head(self, x, pre_logits=False):
        x = self.global_pool(x)
        return x if pre_logits else self.classifier(self.dropout(x))


@register_model("mobilenetv2", input_size=(3, 224, 224), crop_pct=0.875, reference=dict(
    params=3_504_872, macs=300_774_272, top1=72.0,
    source="Sandler et al. 2018 (top-1 72.0, 300M MACs, 3.4M params); params/MACs measured on timm mobilenetv2_100"))
def mobilenetv2_100(num_classes=1000, in_channels=3, **options):
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, **options)
