"""Ghost-VGG-16 for CIFAR (GhostNet paper, Table 4 and the ratio ablation of Table 3).

VGG-16 with BN whose 13 3x3 convs are Ghost modules (ratio `ghost_ratio` = s, cheap kernel `dw_size` = d); the head
global pool -> 512 -> ReLU -> dropout -> classes is the common CIFAR head that reproduces the paper's figures (within
1% for every s). `ghost_ratio=1` is plain VGG-16 with the same cell names, so that the two compare layer by layer
(scripts/visualize_features.py).
"""
import mindspore.nn as nn

from src.models.base import ImageClassifier
from src.models.layers import GhostModule, GlobalAvgPool, activation, batch_norm, conv2d, last_per_stride
from src.models.registry import register_model

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class PlainConvModule(nn.Cell):
    """The k x k conv + BN + ReLU a Ghost module replaces (ratio s = 1), named like a Ghost module's intrinsic part:
    all its `out_channels` maps come from the conv, none from a cheap operation."""

    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.out_channels = out_channels
        self.primary_conv = nn.SequentialCell([
            conv2d(in_channels, out_channels, kernel_size),
            batch_norm(out_channels),
            activation("relu"),
        ])

    def construct(self, x):
        return self.primary_conv(x)


class GhostVGG(ImageClassifier):
    """VGG with Ghost modules in place of conv + BN + ReLU; a stage is the convs up to and including a pool.

    Built for 32 px inputs, where the five 2x2 pools leave a 1x1 map; the global pool keeps larger inputs working.
    `small_input` drops the last pool, so `forward_features` ends on a 2x2 map and the global average pool does
    the last reduction instead; sizes and MACs are unchanged.
    """

    def __init__(self, cfg=VGG16_CFG, num_classes=10, in_channels=3, ghost_ratio=2, dw_size=3, hidden_chs=512,
                 drop_rate=0.5, small_input=False):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        if ghost_ratio < 1:
            raise ValueError(f"ghost_ratio must be >= 1 (1: plain convs), got {ghost_ratio}")
        if small_input and cfg[-1] == "M":
            cfg = cfg[:-1]
        layers, stage_ends, channels, reductions = [], [], [], []
        in_chs, reduction = in_channels, 1
        for i, v in enumerate(cfg):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                reduction *= 2
            else:
                layers.append(GhostModule(in_chs, v, 3, ghost_ratio, dw_size, act="relu") if ghost_ratio > 1
                              else PlainConvModule(in_chs, v, 3))
                in_chs = v
            if v == "M" or i == len(cfg) - 1:
                stage_ends.append(len(layers) - 1)
                channels.append(in_chs)
                reductions.append(reduction)
        self.features = nn.SequentialCell(layers)
        keep = last_per_stride(reductions)
        self._feature_idx = tuple(stage_ends[i] for i in keep)
        self.feature_info = [dict(num_chs=channels[i], reduction=reductions[i], module=f"features.{stage_ends[i]}")
                             for i in keep]
        self.num_features = in_chs
        self.head_hidden_size = hidden_chs

        self.global_pool = GlobalAvgPool(keep_dims=False)
        self.fc1 = nn.Dense(in_chs, hidden_chs)
        self.act1 = nn.ReLU()
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = self._make_classifier(num_classes)

    def _stem(self, x):
        return x

    def _stage_cells(self):
        return self.features  # each layer; `_feature_idx` picks the ends of VGG's stages

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = self.act1(self.fc1(self.global_pool(x)))
        return x if pre_logits else self.classifier(self.dropout(x))


@register_model("ghost_vgg", input_size=(3, 32, 32), crop_pct=1.0, num_classes=10,
                first_conv="features.0.primary_conv.0", reference=dict(
                    params=7.7e6, macs=158e6, top1=93.7, source="GhostNet paper Table 4, CIFAR-10 (s=2, d=3); "
                    "ratio_ablation: Table 3, s -> (params, MACs, top-1)",
                    ratio_ablation={2: (7.7e6, 158e6, 93.7), 3: (5.2e6, 107e6, 93.4), 4: (4.0e6, 80e6, 93.0),
                                    5: (3.3e6, 65e6, 92.9)}))
def ghost_vgg16(num_classes=10, in_channels=3, **options):
    return GhostVGG(VGG16_CFG, num_classes=num_classes, in_channels=in_channels, **options)
