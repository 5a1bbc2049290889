"""GhostNetV2 / V3: exact sizes, DFC attention on small maps, V3 re-parameterisation and export, timm parity.

Sizes are timm 1.0.31's, measured there (V3 deployed: after timm's `convert_to_deploy`). The registry-wide checks
(graph and PyNative forward, gradients to every parameter, options, contract methods) are in test_models.py.
The parity tests build timm's models in the PyTorch reference environment and are skipped without it.
"""
import numpy as np
import pytest
import mindspore
import mindspore.ops as ops

from export import main as export_main
from src.analysis.profile import count_macs, count_params
from src.checkpoint.convert import convert_state_dict
from src.checkpoint.torch_file import load_state_dict
from src.deploy import load_exported, prepare_for_inference, reparameterize
from src.models import create_model, model_info
from src.models.layers import DFCAttention, GhostModule
from tests import torch_reference
from tests.test_export import SMALL, SMALL_FLAGS, images, logits, random_bn_statistics, write_checkpoint

# name: (params, MACs at 224) with 1000 classes; V3: (training form, deployed).
V2_SIZES = {
    "ghostnetv2_100": (6_156_908, 167.05e6),
    "ghostnetv2_130": (8_960_404, 269.32e6),
    "ghostnetv2_160": (12_392_698, 398.61e6),
}
V3_SIZES = {
    "ghostnetv3_050": ((3_395_384, 117.53e6), (2_853_176, 49.64e6)),
    "ghostnetv3_100": ((8_129_028, 404.13e6), (6_147_588, 167.05e6)),
    "ghostnetv3_130": ((12_217_720, 654.84e6), (8_948_296, 269.32e6)),
    "ghostnetv3_160": ((17_275_700, 971.57e6), (12_377_778, 398.61e6)),
}


def assert_size(net, params, macs):
    assert count_params(net) == params
    assert round(count_macs(net, (3, 224, 224)) / 1e4) == round(macs / 1e4)


# --- V3 export (first in the file: export.main sets the device, which MindSpore refuses once a kernel has run) ---

def test_v3_mindir_export_round_trip(tmp_path, capsys):
    """export.py re-parameterises, folds BN, writes and reloads: the file gives the training-form logits."""
    net = write_checkpoint(tmp_path / "w.ckpt", "ghostnetv3_100", **SMALL)
    assert export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", "ghostnetv3_100", *SMALL_FLAGS]) == 0
    assert "reloaded MINDIR" in capsys.readouterr().out
    x = images(3)
    assert np.abs(load_exported(str(tmp_path / "w.mindir"))(x).asnumpy() - logits(net, x)).max() <= 1e-5


@pytest.mark.parametrize("name", ["ghostnetv2_100", "ghostnetv3_100"])
def test_onnx_export_with_dfc_attention_runs_any_batch_in_onnx_runtime(tmp_path, capsys, name):
    """DFC attention's nearest upsampling once went to ONNX with the batch size baked in (-1 under a dynamic batch):
    ONNX Runtime refused every batch. At 40 px the maps are 20, 10, 5 (odd: one more row copied), 3 and 2."""
    pytest.importorskip("onnxruntime")
    net = write_checkpoint(tmp_path / "w.ckpt", name, num_classes=10, in_channels=1, width=0.5)
    assert export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", name, "--width", "0.5", "--num_classes",
                        "10", "--in_channels", "1", "--image_size", "40", "--file_format", "ONNX"]) == 0
    assert "reloaded ONNX" in capsys.readouterr().out
    model = load_exported(str(tmp_path / "w.onnx"))
    assert model.input_shape == (None, 1, 40, 40)
    for n in (1, 3):
        x = images(n, channels=1, size=40)
        assert np.abs(model(x).asnumpy() - logits(net, x)).max() <= 1e-5


# --- sizes and structure -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", V2_SIZES)
def test_v2_size_is_timms(name):
    params, macs = V2_SIZES[name]
    assert (model_info(name).reference["params"], model_info(name).reference["macs"]) == (params, macs)
    assert_size(create_model(name), params, macs)


@pytest.mark.parametrize("name", V3_SIZES)
def test_v3_training_and_deployed_sizes_are_timms(name):
    (params, macs), (deployed_params, deployed_macs) = V3_SIZES[name]
    reference = model_info(name).reference
    assert (reference["params"], reference["deployed_params"]) == (params, deployed_params)
    net = create_model(name)
    assert_size(net, params, macs)
    reparameterize(net)
    assert_size(net, deployed_params, deployed_macs)
    assert not [p.name for p in net.get_parameters() if "_rpr_" in p.name]


def test_dfc_attention_in_ghost1_of_all_but_the_first_two_bottlenecks():
    net = create_model("ghostnetv2_100")
    modules = {name: cell for name, cell in net.cells_and_names() if isinstance(cell, GhostModule)}
    with_attention = sorted(name for name, cell in modules.items() if cell.has_attention)
    assert len(modules) == 32 and len(with_attention) == 14
    assert all(name.endswith("ghost1") for name in with_attention)
    assert "blocks.0.0.ghost1" not in with_attention and "blocks.1.0.ghost1" not in with_attention


@pytest.mark.parametrize("height, width", [(1, 1), (1, 6), (7, 5)])
def test_dfc_attention_pools_every_side_longer_than_one(height, width):
    """A side of length 1 is kept (the reference code fails there), longer ones are pooled 2x2 / 2 (floor)."""
    dfc = random_bn_statistics(DFCAttention(4, 4))
    x = mindspore.Tensor(np.random.default_rng(2).standard_normal((1, 4, height, width)).astype(np.float32))
    window = (min(2, height), min(2, width))
    gate = ops.avg_pool2d(x, window, window)
    for cell in dfc:
        gate = cell(gate)
    expected = ops.interpolate(ops.sigmoid(gate), size=(height, width), mode="nearest")
    out = dfc(x, ops.ones((1, 4, height, width), mindspore.float32))
    assert np.allclose(out.asnumpy(), expected.asnumpy(), atol=1e-7)


@pytest.mark.parametrize("small_input", [False, True], ids=["1x1-last-stage", "small_input"])
@pytest.mark.parametrize("name", ["ghostnetv2_100", "ghostnetv3_100"])
def test_32px_inputs_work(name, small_input):
    net = create_model(name, num_classes=10, small_input=small_input)
    net.set_train(False)
    out = logits(net, images(2))
    assert out.shape == (2, 10) and np.isfinite(out).all()


# --- V3 re-parameterisation --------------------------------------------------------------------------------------

def test_reparameterize_keeps_eval_outputs_within_1e_5():
    net = random_bn_statistics(create_model("ghostnetv3_100", num_classes=10))
    x = images(2, size=64)
    before = logits(net, x)
    reparameterize(net)
    after = logits(net, x)
    assert np.abs(after - before).max() <= 1e-5
    reparameterize(net)  # a second call finds nothing left to fuse
    assert np.array_equal(logits(net, x), after)


def test_v3_deployed_form_is_v2_inference_form():
    """GhostNetV3 without its re-parameterisable branches is GhostNetV2's architecture: once both are in their
    inference form (V3 fused, both BN-folded) they hold the same parameters, and V3's deployed weights make V2 answer
    exactly as V3 does. The results' arm "V3's deployed architecture trained directly" (ghostnetv2_100) rests on this.
    (timm's V3 deployed count, 9,320 below V2's, keeps the BNs that follow no conv; folded here, they are biases.)"""
    sample = mindspore.Tensor(images(2, channels=1))
    v3 = random_bn_statistics(create_model("ghostnetv3_100", num_classes=10, in_channels=1))
    v2 = create_model("ghostnetv2_100", num_classes=10, in_channels=1)
    assert (count_params(v2), count_params(v3)) == (4_888_430, 6_860_550)  # trained forms, 10 classes, 1 channel
    prepare_for_inference(v3, sample)
    prepare_for_inference(v2, sample)
    deployed = {name: param for name, param in v3.parameters_and_names()}
    folded = {name: param for name, param in v2.parameters_and_names()}
    assert {n: p.shape for n, p in folded.items()} == {n: p.shape for n, p in deployed.items()}
    assert count_params(v2) == 4_857_238  # each BN's gamma and beta became one conv bias
    for name, param in folded.items():
        param.set_data(deployed[name].value())
    assert np.array_equal(v2(sample).asnumpy(), v3(sample).asnumpy())


# --- parity with timm (PyTorch reference environment) ------------------------------------------------------------

_TIMM = r"""
import sys
import numpy as np
import tvshim  # noqa: F401  (before timm)
import timm, torch

out = sys.argv[1]
torch.manual_seed(0)
inputs = {"x64": torch.randn(2, 3, 64, 64), "x224": torch.randn(1, 3, 224, 224)}  # 224: odd 7x7 maps
arrays = dict(inputs)
for name in sys.argv[2:]:
    model = timm.create_model(name, pretrained=False)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 64, 64))  # running statistics of a real batch, perturbed below
        for bn in bns:  # scales <= 1: with larger ones these random nets amplify float32 rounding past 1e-3
            bn.running_mean += 0.1 * torch.randn_like(bn.running_mean)
            bn.running_var *= torch.empty_like(bn.running_var).uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.0)
            bn.bias.normal_(0.0, 0.1)
        model.eval()
        torch.save(model.state_dict(), f"{out}/{name}.pth")
        arrays.update({f"{name}.{key}": model(x) for key, x in inputs.items()})
        if "v3" in name:
            model.convert_to_deploy()
            torch.save(model.state_dict(), f"{out}/{name}.deployed.pth")
            arrays.update({f"{name}.deployed.{key}": model(x) for key, x in inputs.items()})
np.savez(f"{out}/outputs.npz", **{k: v.numpy() for k, v in arrays.items()})
"""


@pytest.fixture(scope="module")
def timm_outputs(tmp_path_factory):
    torch_reference.require("torch", "timm")
    out = tmp_path_factory.mktemp("timm_ghostnet_v2_v3")
    torch_reference.run(_TIMM, out, "ghostnetv2_100", "ghostnetv3_100")
    with np.load(out / "outputs.npz") as arrays:
        return out, dict(arrays)


def converted(name, path, deployed=False):
    """Our `name` (re-parameterised first when `deployed`) holding the torch checkpoint at `path`, in eval mode."""
    net = create_model(name)
    if deployed:
        reparameterize(net)
    params = convert_state_dict(load_state_dict(path), net)
    assert mindspore.load_param_into_net(net, params, strict_load=True) == ([], [])
    net.set_train(False)
    return net


def assert_timm_logits(net, arrays, key):
    for size in ("x64", "x224"):
        difference = np.abs(logits(net, arrays[size]) - arrays[f"{key}.{size}"]).max()
        assert difference <= 1e-4, f"{key} at {size}: max |logit difference| {difference:.3g}"


@pytest.mark.parametrize("name", ["ghostnetv2_100", "ghostnetv3_100"])
def test_converted_timm_weights_give_timm_logits(timm_outputs, name):
    out, arrays = timm_outputs
    assert_timm_logits(converted(name, out / f"{name}.pth"), arrays, name)


def test_v3_reparameterized_like_timm(timm_outputs):
    """Fusing here and in timm agrees, and timm's deployed checkpoint loads into our deployed network."""
    out, arrays = timm_outputs
    net = converted("ghostnetv3_100", out / "ghostnetv3_100.pth")
    reparameterize(net)
    assert_timm_logits(net, arrays, "ghostnetv3_100.deployed")
    assert_timm_logits(converted("ghostnetv3_100", out / "ghostnetv3_100.deployed.pth", deployed=True), arrays,
                       "ghostnetv3_100.deployed")
