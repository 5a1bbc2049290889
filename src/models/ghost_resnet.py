"""Ghost-ResNets from the GhostNet paper: ResNet-50 (ImageNet) and ResNet-56 (CIFAR) with Ghost modules.

Every conv + BN pair but the stem's is one `GhostModule` (ratio `ghost_ratio` = s, cheap kernel `dw_size` = d) with
the kernel size and stride of the conv it replaces, and act=None where ResNet has no ReLU after the BN, so residual
adds are ResNet's. ResNet-50's classifier is a Ghost module too, as in the paper's accounting (12.93M / 6.62M params
at s=2 / 4); `ghost_classifier=False` keeps a dense one (the official sketch's, better for fine-tuning).

Options: `ghost_ratio` (fixed by the name for ResNet-50), `dw_size` (3), `ghost_classifier`, `drop_rate` (0),
`small_input` (see `GhostResNet`).
"""
import mindspore.nn as nn
import mindspore.ops as ops

from src.models.base import ImageClassifier
from src.models.layers import GhostModule, GlobalAvgPool, activation, batch_norm, conv2d
from src.models.registry import register_model


class GhostBasicBlock(nn.Cell):
    """ResNet basic block (3x3, 3x3) made of Ghost modules; used by the CIFAR ResNet-56."""

    expansion = 1

    def __init__(self, in_chs, chs, stride=1, downsample=None, ratio=2, dw_size=3):
        super().__init__()
        self.conv1 = GhostModule(in_chs, chs, 3, ratio, dw_size, stride, act="relu")
        self.conv2 = GhostModule(chs, chs, 3, ratio, dw_size, 1, act=None)
        self.downsample = downsample
        self.act = activation("relu")

    def construct(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv2(self.conv1(x)) + shortcut)


class GhostBottleneck(nn.Cell):
    """ResNet bottleneck (1x1, 3x3 with the stride, 1x1 to 4x width) made of Ghost modules; used by ResNet-50."""

    expansion = 4

    def __init__(self, in_chs, chs, stride=1, downsample=None, ratio=2, dw_size=3):
        super().__init__()
        self.conv1 = GhostModule(in_chs, chs, 1, ratio, dw_size, 1, act="relu")
        self.conv2 = GhostModule(chs, chs, 3, ratio, dw_size, stride, act="relu")
        self.conv3 = GhostModule(chs, chs * self.expansion, 1, ratio, dw_size, 1, act=None)
        self.downsample = downsample
        self.act = activation("relu")

    def construct(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv3(self.conv2(self.conv1(x))) + shortcut)


class GhostClassifier(nn.Cell):
    """The classifier as a 1x1 Ghost module (act=None) on the pooled features; see the module docstring."""

    def __init__(self, in_chs, num_classes, ratio=2, dw_size=3):
        super().__init__()
        self.ghost = GhostModule(in_chs, num_classes, 1, ratio, dw_size, act=None)

    def construct(self, x):
        return ops.flatten(self.ghost(x.reshape(x.shape + (1, 1))))


class PadShortcut(nn.Cell):
    """The parameter-free CIFAR ResNet shortcut (He et al. option A): subsample, zero-pad the new channels."""

    def __init__(self, in_chs, out_chs, stride):
        super().__init__()
        # x[:, :, ::s, ::s] as a 1x1 max-pool: MindSpore 2.10's CPU backward of a strided slice fails here.
        self.subsample = nn.MaxPool2d(1, stride)
        self.pad = (0, 0, 0, 0, (out_chs - in_chs) // 2, out_chs - in_chs - (out_chs - in_chs) // 2)

    def construct(self, x):
        return ops.pad(self.subsample(x), self.pad)


class GhostResNet(ImageClassifier):
    """A ResNet whose convs after the stem are Ghost modules.

    ImageNet layout (`cifar_layout=False`): 7x7/2 stem + 3x3/2 max-pool, projection shortcuts (Ghost modules).
    CIFAR layout: 3x3/1 stem, no pool, parameter-free shortcuts, as in the ResNet paper's CIFAR nets.
    `small_input` on the ImageNet layout makes the stem stride 1 and drops the max-pool (reduction 32 -> 8);
    the CIFAR layout is already built for 32 px.
    """

    classifier_name = "fc"

    def __init__(self, block, layers, widths, num_classes=1000, in_channels=3, ghost_ratio=2, dw_size=3,
                 cifar_layout=False, small_input=False, drop_rate=0.0, ghost_classifier=False):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.ghost_ratio = ghost_ratio
        self.dw_size = dw_size
        self.ghost_classifier = ghost_classifier
        stem_chs = widths[0]
        stem_kernel, stem_stride = (3, 1) if cifar_layout else (7, 1 if small_input else 2)
        self.conv1 = conv2d(in_channels, stem_chs, stem_kernel, stem_stride)
        self.bn1 = batch_norm(stem_chs)
        self.act1 = activation("relu")
        use_pool = not (cifar_layout or small_input)
        self.maxpool = nn.MaxPool2d(3, 2, pad_mode="pad", padding=1) if use_pool else nn.Identity()

        # One feature map per stride: without the max-pool the stem shares layer1's stride and is left out.
        self._stem_is_feature = use_pool
        reduction = stem_stride
        self.feature_info = [dict(num_chs=stem_chs, reduction=reduction, module="act1")] if use_pool else []
        reduction *= 2 if use_pool else 1
        in_chs = stem_chs
        for i, (repeats, chs) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            out_chs = chs * block.expansion
            downsample = None
            if stride != 1 or in_chs != out_chs:
                downsample = (PadShortcut(in_chs, out_chs, stride) if cifar_layout
                              else GhostModule(in_chs, out_chs, 1, ghost_ratio, dw_size, stride, act=None))
            stage = [block(in_chs, chs, stride, downsample, ghost_ratio, dw_size)]
            stage += [block(out_chs, chs, 1, None, ghost_ratio, dw_size) for _ in range(repeats - 1)]
            setattr(self, f"layer{i + 1}", nn.SequentialCell(stage))
            reduction *= stride
            self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=f"layer{i + 1}"))
            in_chs = out_chs
        self._stage_names = tuple(f"layer{i + 1}" for i in range(len(layers)))
        self.num_features = self.head_hidden_size = in_chs

        self.global_pool = GlobalAvgPool(keep_dims=False)
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = self._make_classifier(num_classes)

    def _make_classifier(self, num_classes):
        if num_classes > 0 and self.ghost_classifier:
            return GhostClassifier(self.num_features, num_classes, self.ghost_ratio, self.dw_size)
        return super()._make_classifier(num_classes)

    def forward_stages(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        features = [x] if self._stem_is_feature else []
        x = self.maxpool(x)
        for name in self._stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        return features

    def forward_features(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for name in self._stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x, pre_logits=False):
        x = self.global_pool(x)
        return x if pre_logits else self.fc(self.dropout(x))


_IMAGENET = dict(input_size=(3, 224, 224), crop_pct=0.875, first_conv="conv1", classifier="fc")
_CIFAR = dict(input_size=(3, 32, 32), crop_pct=1.0, num_classes=10, first_conv="conv1", classifier="fc")
_PAPER_HEAD = "; the paper's params count the classifier as a Ghost module (the default here)"


@register_model("ghost_resnet", **_IMAGENET, reference=dict(
    params=13.0e6, macs=2.2e9, top1=75.0, source="GhostNet paper Table 5 (s=2, d=3)" + _PAPER_HEAD))
def ghost_resnet50_s2(num_classes=1000, in_channels=3, **options):
    options.setdefault("ghost_classifier", True)
    return GhostResNet(GhostBottleneck, (3, 4, 6, 3), (64, 128, 256, 512), num_classes, in_channels, ghost_ratio=2,
                       **options)


@register_model("ghost_resnet", **_IMAGENET, reference=dict(
    params=6.5e6, macs=1.2e9, top1=74.1, source="GhostNet paper Table 5 (s=4, d=3)" + _PAPER_HEAD))
def ghost_resnet50_s4(num_classes=1000, in_channels=3, **options):
    options.setdefault("ghost_classifier", True)
    return GhostResNet(GhostBottleneck, (3, 4, 6, 3), (64, 128, 256, 512), num_classes, in_channels, ghost_ratio=4,
                       **options)


@register_model("ghost_resnet", **_CIFAR, reference=dict(
    params=0.43e6, macs=63e6, top1=92.7, source="GhostNet paper Table 4, CIFAR-10 (s=2, d=3)"))
def ghost_resnet56(num_classes=10, in_channels=3, **options):
    return GhostResNet(GhostBasicBlock, (9, 9, 9), (16, 32, 64), num_classes, in_channels, cifar_layout=True,
                       **options)
