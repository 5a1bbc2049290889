"""export.py and src/deploy: inference form (BN folding, re-parameterisation seam), MINDIR / ONNX round trips,
dynamic and fixed batch sizes, a MINDIR run by a process that imports only mindspore, and argument errors.

Checkpoints hold random weights whose BN statistics are far from their initial values, so folding changes every
folded conv. Inputs are 32 px (small_input) with 10 classes: each export compiles a graph, seconds on CPU.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import mindspore
import mindspore.nn as nn

import export
from export import ExportError, main as export_main
from src.checkpoint import CheckpointError
from src.deploy import ExportedModelError, fold_batchnorm, load_exported, prepare_for_inference, serving_function
from src.models import create_model, list_models, model_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every GhostNet v1 variant and the baselines; the larger variants built from the same cells (ghostnet_600,
# ghost_resnet50_*) are checked for folding only, which needs no graph compile (~15 s per export here).
ROUND_TRIP_MODELS = ["ghostnet_050", "ghostnet_100", "ghostnet_100_nose", "ghostnet_130", "mobilenetv2_100",
                     "mobilenetv3_large_100", "ghost_resnet56", "ghost_vgg16"]
ZOO_MODELS = [name for name in list_models() if model_info(name).family != "test"]  # not the fixtures' models
FOLD_ONLY_MODELS = sorted(set(ZOO_MODELS) - set(ROUND_TRIP_MODELS))
SMALL = dict(num_classes=10, in_channels=3, small_input=True)
SMALL_FLAGS = ["--num_classes", "10", "--in_channels", "3", "--small_input", "true", "--image_size", "32"]


def random_bn_statistics(net, seed=0):
    rng = np.random.default_rng(seed)
    for name, param in net.parameters_and_names():  # scales <= 1: deep nets must not blow up float32 rounding
        if name.endswith("gamma"):
            param.set_data(mindspore.Tensor(rng.uniform(0.5, 1.0, param.shape).astype(np.float32)))
        elif name.endswith("moving_variance"):
            param.set_data(mindspore.Tensor(rng.uniform(1.0, 2.0, param.shape).astype(np.float32)))
        elif name.endswith(("moving_mean", "beta")):
            param.set_data(mindspore.Tensor(rng.normal(0.0, 0.5, param.shape).astype(np.float32)))
    net.set_train(False)
    return net


def write_checkpoint(path, name, **kwargs):
    """A checkpoint of `name` with random weights and BN statistics; returns the network (eval mode)."""
    net = random_bn_statistics(create_model(name, **kwargs))
    mindspore.save_checkpoint(net, str(path))
    return net


def images(n, channels=3, size=32, seed=1):
    return np.random.default_rng(seed).standard_normal((n, channels, size, size)).astype(np.float32)


def logits(net, x):
    return net(mindspore.Tensor(x)).asnumpy()


def mindir_shapes(path):
    """(input shapes, output shapes) the MINDIR file declares, -1 for a dynamic dimension."""
    from mindspore.train.mind_ir_pb2 import ModelProto
    model = ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    return ([list(t.dims) for value in model.graph.input for t in value.tensor],
            [list(t.dims) for value in model.graph.output for t in value.tensor])


# --- inference form ----------------------------------------------------------------------------------------------

def test_ghostnet_folds_every_conv_bn_pair_within_1e_5():
    net = random_bn_statistics(create_model("ghostnet_100", num_classes=10))
    x = images(2, size=64)
    before = logits(net, x)
    pairs = dict(fold_batchnorm(net, mindspore.Tensor(x)))
    assert np.abs(logits(net, x) - before).max() <= 1e-5
    assert len(pairs) == 80 and not [n for n, c in net.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    for conv, bn in [("conv_stem", "bn1"), ("blocks.3.0.conv_dw", "blocks.3.0.bn_dw"),
                     ("blocks.9.0.conv", "blocks.9.0.bn1"),
                     ("blocks.0.0.ghost1.primary_conv.0", "blocks.0.0.ghost1.primary_conv.1"),
                     ("blocks.1.0.shortcut.2", "blocks.1.0.shortcut.3")]:
        assert pairs[conv] == bn
    cells = dict(net.cells_and_names())
    assert all(cells[conv].has_bias for conv in pairs)


def test_folding_a_compiled_graph_recompiles():
    """Graph mode, network compiled before folding (export.py's order): the next call must run the folded network,
    MindSpore's own cells only (the CPU kernel pass, src/kernels, is never part of an export)."""
    net = random_bn_statistics(create_model("ghostnet_050", **SMALL))
    x = images(1)
    mindspore.set_context(mode=mindspore.GRAPH_MODE)
    before = logits(net, x)
    fold_batchnorm(net, mindspore.Tensor(x))
    assert np.abs(logits(net, x) - before).max() <= 1e-5
    assert not [name for name, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    assert not [name for name, cell in net.cells_and_names() if type(cell).__module__.startswith("src.kernels")]


def test_serving_function_runs_the_same_graph_without_walking_the_cells(monkeypatch):
    """The serving function of an inference form answers bit for bit as calling the cell does (batches of 1 and 3,
    graph mode), and its calls skip the cell call's per-call walk that sets every sub-cell's compile phase (why it
    exists: src/deploy/serving.py)."""
    net = random_bn_statistics(create_model("ghostnet_050", **SMALL))
    mindspore.set_context(mode=mindspore.GRAPH_MODE)
    prepare_for_inference(net, mindspore.Tensor(images(1)))
    serve = serving_function(net)
    phase_sets = []
    setter = nn.Cell.compile_phase.fset
    monkeypatch.setattr(nn.Cell, "compile_phase", property(
        nn.Cell.compile_phase.fget, lambda cell, value: (phase_sets.append(cell), setter(cell, value))))
    for batch in (1, 3):
        x = mindspore.Tensor(images(batch, seed=batch))
        np.testing.assert_array_equal(serve(x).asnumpy(), net(x).asnumpy())
        del phase_sets[:]
        serve(x).asnumpy()
        assert not phase_sets
        net(x).asnumpy()
        assert len(phase_sets) >= len(list(net.cells_and_names()))


class _NotFoldable(nn.Cell):
    """BN after an add, and a conv output read by both a BN and another cell: neither may fold."""

    def __init__(self):
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)
        self.conv_b, self.bn_b, self.act = nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2), nn.ReLU()

    def construct(self, x):
        a = self.bn_a(self.conv_a(x) + x)
        b = self.conv_b(x)
        return a + self.bn_b(b) + self.act(b)


def test_bn_not_fed_by_a_conv_alone_stays():
    net = random_bn_statistics(_NotFoldable())
    assert fold_batchnorm(net, mindspore.Tensor(images(1, channels=2, size=8))) == []
    assert isinstance(net.bn_a, nn.BatchNorm2d) and isinstance(net.bn_b, nn.BatchNorm2d)


class _Reparameterizable(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fused = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), False

    def reparameterize(self):
        self.fused = True

    def construct(self, x):
        return self.bn(self.conv(x))


def test_prepare_for_inference_reparameterizes_then_folds():
    net = nn.SequentialCell([_Reparameterizable(), nn.Dropout(p=0.5)])
    net.set_train(True)
    pairs = prepare_for_inference(net, mindspore.Tensor(images(1, channels=1, size=8)))
    assert net[0].fused and not net.training and pairs == [("0.conv", "0.bn")]


# --- round trips -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ROUND_TRIP_MODELS)
def test_mindir_round_trip(tmp_path, name, capsys):
    net = write_checkpoint(tmp_path / "w.ckpt", name, **SMALL)
    assert export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", name, *SMALL_FLAGS]) == 0
    assert "reloaded MINDIR" in capsys.readouterr().out
    assert mindir_shapes(str(tmp_path / "w.mindir")) == ([[-1, 3, 32, 32]], [[-1, 10]])
    x = images(3)  # export checked batch 2; the batch dimension is dynamic
    assert np.abs(load_exported(str(tmp_path / "w.mindir"))(x).asnumpy() - logits(net, x)).max() <= 1e-5


@pytest.mark.parametrize("name", FOLD_ONLY_MODELS)
def test_bn_folding_within_1e_5(name):
    net = random_bn_statistics(create_model(name, **SMALL))
    x = images(2)
    before = logits(net, x)
    assert fold_batchnorm(net, mindspore.Tensor(x))
    assert np.abs(logits(net, x) - before).max() <= 1e-5


def test_fixed_batch_mindir_in_a_process_that_imports_only_mindspore(tmp_path):
    """A consumer needs nothing of this repo; a fixed-batch file still takes any batch through load_exported."""
    net = write_checkpoint(tmp_path / "w.ckpt", "ghostnet_050", **SMALL)
    out = str(tmp_path / "g.mindir")
    assert export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", "ghostnet_050", "--output", out,
                        "--static_batch", "4", *SMALL_FLAGS]) == 0
    assert mindir_shapes(out) == ([[4, 3, 32, 32]], [[4, 10]])
    x = images(5)
    np.save(tmp_path / "x.npy", x[:4])
    child = textwrap.dedent(f"""
        import sys, numpy as np, mindspore, mindspore.nn as nn
        assert not any(m == "src" or m.startswith("src.") for m in sys.modules)
        net = nn.GraphCell(mindspore.load({out!r}))
        np.save("y.npy", net(mindspore.Tensor(np.load("x.npy"))).asnumpy())
    """)
    subprocess.run([sys.executable, "-c", child], cwd=tmp_path, check=True, capture_output=True)
    expected = logits(net, x)
    assert np.abs(np.load(tmp_path / "y.npy") - expected[:4]).max() <= 1e-5

    model = load_exported(out)
    assert model.input_shape == (4, 3, 32, 32)
    assert np.abs(model(x).asnumpy() - expected).max() <= 1e-5  # one full batch, one padded
    with pytest.raises(ExportedModelError, match="takes N x 3 x 32 x 32"):
        model(images(2, channels=1))


def test_onnx_round_trip_declares_a_dynamic_batch_on_its_output(tmp_path, capfd):
    ort = pytest.importorskip("onnxruntime")
    net = write_checkpoint(tmp_path / "w.ckpt", "ghostnet_050", **SMALL)
    assert export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", "ghostnet_050", "--file_format", "onnx",
                        *SMALL_FLAGS]) == 0
    assert "reloaded ONNX" in capfd.readouterr().out
    model = load_exported(str(tmp_path / "w.onnx"))
    x = images(3)
    assert model.input_shape == (None, 3, 32, 32)
    assert np.abs(model(x).asnumpy() - logits(net, x)).max() <= 1e-4

    session = ort.InferenceSession(str(tmp_path / "w.onnx"), providers=["CPUExecutionProvider"])  # warnings on
    assert [node.shape for node in session.get_inputs()] == [["batch", 3, 32, 32]]
    assert [node.shape for node in session.get_outputs()] == [["batch", 10]]
    for batch in (1, 3):
        assert session.run(None, {"image": images(batch)})[0].shape == (batch, 10)
    assert "Expected shape" not in capfd.readouterr().err


# --- the check of the written file -------------------------------------------------------------------------------

def _large_logits_checkpoint(path, target=1e4):
    """ghostnet_050 whose classifier is scaled so that its largest |logit| on random images is about `target`."""
    net = random_bn_statistics(create_model("ghostnet_050", **SMALL))
    factor = target / np.abs(logits(net, images(2))).max()
    for param in (net.classifier.weight, net.classifier.bias):
        param.set_data(mindspore.Tensor(param.asnumpy() * factor))
    mindspore.save_checkpoint(net, str(path))


def _reported(out, before, after=" "):
    """The number after `before` on export's line about the reloaded file."""
    line = next(line for line in out.splitlines() if line.startswith("reloaded "))
    return float(line.split(before)[1].split(after)[0])


def test_export_of_large_logits_is_judged_relative_to_their_scale(tmp_path, capsys):
    """Float32 rounding grows with the logits: logits ~1e4 differ from the reloaded file by more than 1e-4, and the
    file passes by the tolerance README states, 1e-4 + 1e-5 x the largest |logit|."""
    _large_logits_checkpoint(tmp_path / "w.ckpt")
    assert export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", "ghostnet_050", *SMALL_FLAGS]) == 0
    out = capsys.readouterr().out
    scale, allowed = _reported(out, "of the largest |logit| "), _reported(out, " = ", ")")
    assert "OK" in out and 3e3 <= scale <= 3e4
    assert allowed == pytest.approx(1e-4 + 1e-5 * scale, rel=2e-3)  # as printed, to 3 significant digits
    assert 1e-4 < _reported(out, "max |difference| ", ",") <= allowed


def test_a_file_off_by_three_times_the_tolerance_fails(tmp_path, capsys, monkeypatch):
    """A file whose logits are off by 3e-5 of the largest |logit| (three times the relative tolerance) fails."""
    _large_logits_checkpoint(tmp_path / "w.ckpt")
    write = export._write

    def write_shifted(net, file_format, sample, *args):
        shift = 3e-5 * np.abs(net(sample).asnumpy()).max()
        net.classifier.bias.set_data(mindspore.Tensor(net.classifier.bias.asnumpy() + np.float32(shift)))
        write(net, file_format, sample, *args)

    monkeypatch.setattr(export, "_write", write_shifted)
    assert export_main(["--ckpt_path", str(tmp_path / "w.ckpt"), "--model", "ghostnet_050", *SMALL_FLAGS]) == 1
    out = capsys.readouterr().out
    scale, difference = _reported(out, "of the largest |logit| "), _reported(out, "max |difference| ", ",")
    assert "FAILED" in out and 3e3 <= scale <= 3e4
    assert difference == pytest.approx(3e-5 * scale, rel=0.05)


# --- errors ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "w.ckpt"
    write_checkpoint(path, "ghostnet_050", **SMALL)
    return str(path)


@pytest.mark.parametrize("flags, message", [
    (["--file_format", "TFLITE"], "--file_format must be one of MINDIR, ONNX, AIR"),
    (["--file_format", "air"], "AIR export needs an Ascend device"),
    (["--image_size", "0"], "one or two positive integers"),
    (["--image_size", "32", "32", "32"], "one or two positive integers"),
    (["--image_size", "4"], "too small for ghostnet_050: it downsamples 8x"),
    (["--static_batch", "0"], "--static_batch must be at least 1"),
])
def test_bad_arguments_are_named(checkpoint, flags, message):
    with pytest.raises(ExportError, match=message):
        export_main(["--ckpt_path", checkpoint, "--model", "ghostnet_050", *SMALL_FLAGS, *flags])


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ExportError, match="checkpoint file not found: .*nothing.ckpt"):
        export_main(["--ckpt_path", str(tmp_path / "nothing.ckpt")])
    with pytest.raises(ExportError, match="pass --ckpt_path"):
        export_main([])


def test_checkpoint_of_another_model(checkpoint):
    with pytest.raises(CheckpointError, match="does not fit the model"):
        export_main(["--ckpt_path", checkpoint, "--model", "ghostnet_100", *SMALL_FLAGS])


def test_command_line_error_exit_status(tmp_path):
    result = subprocess.run([sys.executable, "export.py", "--ckpt_path", str(tmp_path / "x.ckpt"),
                             "--file_format", "PB"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert "export.py: error: --file_format must be one of MINDIR, ONNX, AIR, got 'PB'" in result.stderr
