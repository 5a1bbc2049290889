"""GhostNet-600 from the MindSpore model zoo (`research/cv/ghostnet/src/ghostnet600.py`): 80.2 top-1 reported.

GhostNet v1's network on a wider, deeper table: width 1.75, h-swish everywhere, SE in all 19 bottlenecks (squeeze
make_divisible(mid // 10, 8)), mid = make_divisible(in * ratio, 8), a 1680-channel final conv and a 1400-wide head;
11,939,796 params as in the zoo. Stages are grouped as in v1 (the zoo's flat checkpoints load through
src/checkpoint's layouts); init follows the zoo. Options as for v1; dropout defaults to 0.2 (the zoo's 0.8 is
keep_prob).
"""
import mindspore.nn as nn
from mindspore.common.initializer import HeNormal, Normal, Zero, initializer

from src.models.ghostnet import BlockSpec, GhostNet
from src.models.layers import make_divisible
from src.models.registry import register_model

# kernel, mid = in * ratio, out (before width), stride; one inner tuple per stage (entry of `blocks`).
_TABLE = (
    ((3, 1, 16, 1),),
    ((3, 3, 24, 2),),
    ((3, 3, 24, 1),),
    ((5, 3, 40, 2),),
    ((3, 3, 40, 1), (3, 3, 40, 1)),
    ((3, 6, 80, 2),),
    ((3, 2.5, 80, 1), (3, 2.5, 80, 1), (3, 2.5, 80, 1), (3, 6, 112, 1), (3, 6, 112, 1), (3, 6, 112, 1)),
    ((5, 6, 160, 2),),
    ((3, 6, 160, 1),) * 5,
)
_SE_REDUCTION = 10


def _init_like_zoo(net):
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            cell.weight.set_data(initializer(HeNormal(mode="fan_out"), cell.weight.shape, cell.weight.dtype))
        elif isinstance(cell, nn.Dense):
            cell.weight.set_data(initializer(Normal(0.01), cell.weight.shape, cell.weight.dtype))
        else:
            continue
        if cell.bias is not None:
            cell.bias.set_data(initializer(Zero(), cell.bias.shape, cell.bias.dtype))


@register_model("ghostnet", reference=dict(params=11_939_796, macs=591e6, top1=80.2,
                                            source="MindSpore model zoo (reported FLOPs and top-1; params measured)"))
def ghostnet_600(num_classes=1000, in_channels=3, width=1.75, drop_rate=0.2, small_input=False):
    stem = make_divisible(16 * width, 4)
    stages, prev = [], stem
    for stage in _TABLE:
        specs = []
        for k, ratio, out, stride in stage:
            mid = make_divisible(prev * ratio, 8)
            prev = make_divisible(out * width, 4)
            specs.append(BlockSpec(k, mid, prev, make_divisible(mid // _SE_REDUCTION, 8), stride))
        stages.append(specs)
    net = GhostNet(stages, stem_channels=stem, final_channels=make_divisible(960 * width, 8), head_channels=1400,
                   num_classes=num_classes, in_channels=in_channels, act="hard_swish", drop_rate=drop_rate,
                   small_input=small_input)
    _init_like_zoo(net)
    return net
