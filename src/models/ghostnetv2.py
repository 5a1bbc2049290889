"""GhostNetV2 (Tang et al., NeurIPS 2022): GhostNet v1 with DFC attention on the expanding Ghost modules.

Variants: `ghostnetv2_100`, `ghostnetv2_130`, `ghostnetv2_160` (width 1.0 / 1.3 / 1.6): v1's table, stem and head
(`build_ghostnet`), with ghost1 of every bottleneck but the first two gated by `DFCAttention`. Child names follow
timm's state_dict; unlike the reference code, inputs down to 32 px work. Options as for GhostNet v1.
"""
from src.models.ghostnet import build_ghostnet
from src.models.registry import register_model

_SOURCE = ("NeurIPS 2022 paper (1.3x / 1.6x top-1 read off its figure; timm's weights evaluate to 75.19 / 76.75 / "
           "77.84); params and MACs measured on timm 1.0.31")


@register_model("ghostnetv2", reference=dict(params=6_156_908, macs=167.05e6, top1=75.3, source=_SOURCE))
def ghostnetv2_100(num_classes=1000, in_channels=3, width=1.0, **options):
    return build_ghostnet(width, attention=True, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnetv2", reference=dict(params=8_960_404, macs=269.32e6, top1=76.9, source=_SOURCE))
def ghostnetv2_130(num_classes=1000, in_channels=3, width=1.3, **options):
    return build_ghostnet(width, attention=True, num_classes=num_classes, in_channels=in_channels, **options)


@register_model("ghostnetv2", reference=dict(params=12_392_698, macs=398.61e6, top1=77.8, source=_SOURCE))
def ghostnetv2_160(num_classes=1000, in_channels=3, width=1.6, **options):
    return build_ghostnet(width, attention=True, num_classes=num_classes, in_channels=in_channels, **options)
