"""Model sizes against their references: the MobileNet baselines exactly as timm builds them, the Ghost-ResNets and
Ghost-VGG-16 within 5% of the GhostNet paper, and Ghost modules at about 1/s of the plain convs they replace.

Reference figures come from the registry metadata (`model_info(name).reference`). MACs count conv and dense layers
with BN unfused (src/analysis/profile.py), the convention of the papers' FLOPs and of timm's measured figures. The
timm logit parity test runs only where the PyTorch reference environment exists (tests/torch_reference.py).
"""
import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest

from src.analysis.profile import count_macs, count_params
from src.checkpoint.convert import convert_state_dict
from src.checkpoint.torch_file import load_state_dict
from src.models import create_model, model_info
from src.models.ghost_vgg import VGG16_CFG
from src.models.layers import batch_norm, conv2d
from tests import torch_reference

MOBILENETS = ("mobilenetv3_large_100", "mobilenetv2_100")
GHOST_RATIOS = (2, 3, 4, 5)


def assert_within(measured, reference, what, tolerance=0.05):
    assert abs(measured / reference - 1) <= tolerance, \
        f"{what}: {measured / 1e6:.3f}M is {100 * (measured / reference - 1):+.1f}% from {reference / 1e6:.3f}M"


def build(name, **options):
    """The registered model with its reference class count (create_model's default is 1000 for every model)."""
    return create_model(name, num_classes=model_info(name).num_classes, **options)


@pytest.mark.parametrize("name", MOBILENETS)
def test_mobilenet_size_is_timms(name):
    info = model_info(name)
    net = build(name)
    assert count_params(net) == info.reference["params"]
    assert count_macs(net, info.input_size) == info.reference["macs"]


@pytest.mark.parametrize("name", ["ghost_resnet50_s2", "ghost_resnet50_s4"])
def test_ghost_resnet50_size_matches_paper(name):
    """The paper's sizes count the classifier as a Ghost module (the default); the dense head differs only there."""
    info = model_info(name)
    paper_head, dense_head = build(name), build(name, ghost_classifier=False)
    assert_within(count_params(paper_head), info.reference["params"], f"{name} params")
    assert_within(count_macs(paper_head, info.input_size), info.reference["macs"], f"{name} MACs")
    assert isinstance(dense_head.fc, nn.Dense)
    assert count_params(dense_head) - count_params(dense_head.fc) == \
        count_params(paper_head) - count_params(paper_head.fc)


def test_ghost_resnet56_size_matches_paper():
    info = model_info("ghost_resnet56")
    net = build("ghost_resnet56")
    assert_within(count_params(net), info.reference["params"], "ghost_resnet56 params")
    assert_within(count_macs(net, info.input_size), info.reference["macs"], "ghost_resnet56 MACs")


@pytest.mark.parametrize("ratio", GHOST_RATIOS)
def test_ghost_vgg16_ratio_ablation_matches_paper(ratio):
    info = model_info("ghost_vgg16")
    params, macs, _ = info.reference["ratio_ablation"][ratio]
    net = build("ghost_vgg16", ghost_ratio=ratio)
    assert_within(count_params(net), params, f"s={ratio} params")
    assert_within(count_macs(net, info.input_size), macs, f"s={ratio} MACs")


def plain_vgg16_features():
    """The plain conv + BN + ReLU features Ghost-VGG-16 replaces, for the 1/s comparison."""
    layers, in_chs = [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [conv2d(in_chs, v, 3), batch_norm(v), nn.ReLU()]
            in_chs = v
    return nn.SequentialCell(layers)


@pytest.fixture(scope="module")
def plain_vgg16_cost():
    features = plain_vgg16_features()
    return count_params(features), count_macs(features, (3, 32, 32))


def test_ghost_vgg16_head_on_plain_features_is_papers_vgg16(plain_vgg16_cost):
    """The chosen CIFAR head on plain features gives the paper's VGG-16 baseline: 15M params, 313M MACs."""
    net = build("ghost_vgg16")
    head_params = count_params(net) - count_params(net.features)
    head_macs = count_macs(net, (3, 32, 32)) - count_macs(net.features, (3, 32, 32))
    assert_within(plain_vgg16_cost[0] + head_params, 15e6, "plain VGG-16 params")
    assert_within(plain_vgg16_cost[1] + head_macs, 313e6, "plain VGG-16 MACs")


@pytest.mark.parametrize("ratio", GHOST_RATIOS)
def test_ghost_features_cost_one_over_s_of_plain_convs(ratio, plain_vgg16_cost):
    features = build("ghost_vgg16", ghost_ratio=ratio).features
    plain_params, plain_macs = plain_vgg16_cost
    assert_within(count_params(features) * ratio, plain_params, f"s={ratio} params x s")
    assert_within(count_macs(features, (3, 32, 32)) * ratio, plain_macs, f"s={ratio} MACs x s")


_TIMM_REFERENCE = r"""
import sys
import numpy as np
import tvshim  # noqa: F401  (before timm)
import timm, torch

out = sys.argv[1]
torch.manual_seed(0)
arrays = {"x": torch.randn(2, 3, 64, 64)}
for name in sys.argv[2:]:
    model = timm.create_model(name, pretrained=False)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0  # running statistics of one real batch, then random affine terms: eval BN is exercised
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 64, 64))
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
        arrays[name] = model.eval()(arrays["x"])
    torch.save(model.state_dict(), f"{out}/{name}.pth")
np.savez(f"{out}/reference.npz", **{k: v.numpy() for k, v in arrays.items()})
"""


@pytest.fixture(scope="module")
def timm_mobilenets(tmp_path_factory):
    torch_reference.require("torch", "timm")
    out = tmp_path_factory.mktemp("timm_mobilenets")
    torch_reference.run(_TIMM_REFERENCE, out, *MOBILENETS)
    with np.load(out / "reference.npz") as arrays:
        return out, dict(arrays)


@pytest.mark.parametrize("name", MOBILENETS)
def test_timm_weights_give_timm_logits(timm_mobilenets, name):
    """Same layers, names and order as timm: its state_dict loads key for key and the logits agree."""
    out, arrays = timm_mobilenets
    net = create_model(name)
    assert ms.load_param_into_net(net, convert_state_dict(load_state_dict(out / f"{name}.pth"), net),
                                  strict_load=True) == ([], [])
    net.set_train(False)
    logits, expected = net(ms.Tensor(arrays["x"])).asnumpy(), arrays[name]
    scale = float(np.abs(expected).max())
    # Hard-swish lets MobileNetV3's activations grow into the thousands here: compare relative to the logit scale.
    assert float(np.abs(logits - expected).max()) <= 1e-3 * max(scale, 1.0)
