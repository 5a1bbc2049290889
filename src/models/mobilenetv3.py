"""MobileNetV3-Large (Howard et al., 2019), the baseline GhostNet's paper measures itself against.

Built to match timm's `mobilenetv3_large_100` one to one: same layers, same state_dict keys, 5,483,032 params
and 216.59M MACs at 224. Details that decide those numbers: SE squeezes the block's expanded (mid) channels by
4 rounded to a multiple of 8, with a ReLU and a hard-sigmoid gate; the stem uses hard-swish; after global
pooling a 1x1 conv 960 -> 1280 *with* bias and no BN, then hard-swish.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from src.models.base import ImageClassifier
from src.models.layers import (ConvBnAct, GlobalAvgPool, activation, batch_norm, conv2d, last_per_stride,
                               make_divisible)
from src.models.mobilenetv2 import DepthwiseSeparable, InvertedResidual
from src.models.registry import register_model

# Paper Table 1, grouped into timm's stages: kernel, expansion (mid) channels, out channels, SE, activation,
# stride. The first row's mid equals its input, so it is a depthwise-separable block without expansion.
MOBILENETV3_LARGE_STAGES = (
    ((3, 16, 16, False, "relu", 1),),
    ((3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1)),
    ((5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1)),
    ((3, 240, 80, False, "hard_swish", 2), (3, 200, 80, False, "hard_swish", 1),
     (3, 184, 80, False, "hard_swish", 1), (3, 184, 80, False, "hard_swish", 1)),
    ((3, 480, 112, True, "hard_swish", 1), (3, 672, 112, True, "hard_swish", 1)),
    ((5, 672, 160, True, "hard_swish", 2), (5, 960, 160, True, "hard_swish", 1),
     (5, 960, 160, True, "hard_swish", 1)),
)


class MobileNetV3(ImageClassifier):
    """MobileNetV3: inverted residuals with optional SE, then a 1x1 conv stage and an "efficient" pooled head.

    `small_input` makes the stem and the first stride-2 stage stride 1, so a 32 px image ends at 4x4, not 1x1.
    `num_features` is the width of `forward_features`' output (960); the classifier sees `head_hidden_size`.
    """

    def __init__(self, num_classes=1000, in_channels=3, stem_chs=16, final_chs=960, head_hidden_size=1280,
                 drop_rate=0.2, small_input=False, stages=MOBILENETV3_LARGE_STAGES):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = final_chs
        self.head_hidden_size = head_hidden_size
        self.drop_rate = drop_rate
        stem_stride = 1 if small_input else 2
        self.conv_stem = conv2d(in_channels, stem_chs, 3, stem_stride)
        self.bn1 = batch_norm(stem_chs)
        self.act1 = activation("hard_swish")

        reduction, reductions, channels = stem_stride, [], []
        skip_downsample = small_input
        in_chs = stem_chs
        blocks = []
        for rows in stages:
            stage = []
            for kernel, mid_chs, out_chs, use_se, act, stride in rows:
                if stride > 1 and skip_downsample:
                    stride, skip_downsample = 1, False
                reduction *= stride
                se_chs = make_divisible(mid_chs * 0.25, 8) if use_se else 0
                if mid_chs == in_chs:
                    stage.append(DepthwiseSeparable(in_chs, out_chs, kernel, stride, act, se_chs))
                else:
                    stage.append(InvertedResidual(in_chs, mid_chs, out_chs, kernel, stride, act, se_chs))
                in_chs = out_chs
            blocks.append(nn.SequentialCell(stage))
            reductions.append(reduction)
            channels.append(in_chs)
        blocks.append(nn.SequentialCell([ConvBnAct(in_chs, final_chs, 1, act="hard_swish")]))
        reductions.append(reduction)
        channels.append(final_chs)
        self.blocks = nn.SequentialCell(blocks)
        self._feature_idx = last_per_stride(reductions)
        self.feature_info = [dict(num_chs=channels[i], reduction=reductions[i], module=f"blocks.{i}")
                             for i in self._feature_idx]

        self.global_pool = GlobalAvgPool(keep_dims=True)
        self.conv_head = conv2d(final_chs, head_hidden_size, 1, bias=True)
        self.act2 = activation("hard_swish")
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x):
        return self.blocks(self._stem(x))

    def forward_head(self, x, pre_logits=False):
        x = ops.flatten(self.act2(self.conv_head(self.global_pool(x))))
        return x if pre_logits else self.classifier(self.dropout(x))


@register_model("mobilenetv3", input_size=(3, 224, 224), crop_pct=0.875, reference=dict(
    params=5_483_032, macs=216_589_760, top1=75.2,
    source="Howard et al. 2019 (top-1 75.2, 219M MACs, 5.4M params); params/MACs measured on timm "
           "mobilenetv3_large_100"))
def mobilenetv3_large_100(num_classes=1000, in_channels=3, **options):
    return MobileNetV3(num_classes=num_classes, in_channels=in_channels, **options)
