"""PyTorch -> MindSpore weight conversion: the safe checkpoint reader, the key mapping and timm parity.

The reader and converter tests write torch.save's zip layout themselves and run without torch. The parity tests
build timm's GhostNets in the PyTorch reference environment (skipped when it is absent), save them as .pth,
.safetensors and a timm-style training checkpoint, and compare our model's logits on the same input.
"""
import collections
import pickle
import sys
import types
import zipfile
from typing import NamedTuple

import mindspore as ms
import mindspore.nn as nn
import numpy as np
import pytest

from scripts.convert_checkpoint import main as convert_main
from src.checkpoint.convert import convert_state_dict
from src.checkpoint.torch_file import UnsafeCheckpointError, load_state_dict, read_torch_file
from src.models import create_model
from tests import torch_reference

GHOSTNETS = ("ghostnet_050", "ghostnet_100", "ghostnet_130")


# ---------------------------------------------------------------------------------------------------------------
# A torch.save writer without torch, for the reader tests


class TensorRecord(NamedTuple):
    """A tensor as torch pickles it: a flat storage plus offset, shape and strides in elements."""

    storage: np.ndarray
    offset: int
    shape: tuple
    stride: tuple


def save_like_torch(path, obj, monkeypatch, byteorder="little"):
    """Write `obj` in torch.save's zip layout; numpy arrays and TensorRecords become tensors.

    pickle writes a function or class by module and name, so stand-ins for `torch._utils._rebuild_tensor_v2`
    and `torch.*Storage` are registered in sys.modules for the duration of the test.
    """
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def rebuild(*args):
        raise AssertionError("only written, never called")

    rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = rebuild
    storage_types = {}
    for dtype, name in ((np.float32, "FloatStorage"), (np.float16, "HalfStorage"), (np.int64, "LongStorage")):
        storage_types[np.dtype(dtype)] = type(name, (), {"__module__": "torch"})
        setattr(torch_mod, name, storage_types[np.dtype(dtype)])
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    storages = []

    class StorageRef(NamedTuple):
        key: int

    class Pickler(pickle.Pickler):
        def reducer_override(self, value):
            if isinstance(value, np.ndarray):
                value = TensorRecord(value.ravel(), 0, value.shape,
                                     tuple(s // value.itemsize for s in value.strides) if value.ndim else ())
            if isinstance(value, TensorRecord):
                storages.append(np.ascontiguousarray(value.storage))
                return rebuild, (StorageRef(len(storages) - 1), value.offset, value.shape, value.stride, False,
                                 collections.OrderedDict())
            return NotImplemented

        def persistent_id(self, value):
            if isinstance(value, StorageRef):
                array = storages[value.key]
                return "storage", storage_types[array.dtype], str(value.key), "cpu", array.size

    with open(path, "wb") as f, zipfile.ZipFile(f, "w") as archive:
        with archive.open("archive/data.pkl", "w") as data:
            Pickler(data, protocol=2).dump(obj)
        archive.writestr("archive/byteorder", byteorder)
        for key, array in enumerate(storages):
            order = "<" if byteorder == "little" else ">"
            archive.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder(order)).tobytes())


# ---------------------------------------------------------------------------------------------------------------
# Reader


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_reader_rebuilds_tensors(tmp_path, monkeypatch, byteorder):
    base = np.arange(24, dtype=np.float32)
    state = collections.OrderedDict(
        weight=np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32),
        half=np.array([0.5, -2.0], np.float16), count=np.array(7, np.int64),
        view=TensorRecord(base, 5, (3, 2), (1, 6)))  # a transposed slice sharing a larger storage
    save_like_torch(tmp_path / "w.pth", state, monkeypatch, byteorder)
    loaded = read_torch_file(tmp_path / "w.pth")
    assert list(loaded) == list(state)
    for key in ("weight", "half", "count"):
        assert loaded[key].dtype == state[key].dtype and np.array_equal(loaded[key], state[key])
    assert np.array_equal(loaded["view"], np.array([[5, 11], [6, 12], [7, 13]], np.float32))


def test_reader_unwraps_training_checkpoint(tmp_path, monkeypatch):
    weight = np.ones((2, 3), np.float32)
    ckpt = {"epoch": 12, "arch": "ghostnet_100", "state_dict": collections.OrderedDict({"module.fc.weight": weight}),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.4, "params": [0]}]}}
    save_like_torch(tmp_path / "model_best.pth.tar", ckpt, monkeypatch)
    state = load_state_dict(tmp_path / "model_best.pth.tar")
    assert list(state) == ["fc.weight"] and np.array_equal(state["fc.weight"], weight)
    with pytest.raises(ValueError, match="no EMA state_dict.*'state_dict_ema'.*top-level keys: 'epoch'"):
        load_state_dict(tmp_path / "model_best.pth.tar", use_ema=True)


def test_reader_refuses_globals_outside_the_allowlist(tmp_path):
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as archive:
        archive.writestr("archive/data.pkl", f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load global 'os\.system'"):
        read_torch_file(tmp_path / "evil.pth")
    assert not marker.exists()


def test_reader_refuses_tensor_records_outside_their_storage(tmp_path, monkeypatch):
    save_like_torch(tmp_path / "bad.pth", {"w": TensorRecord(np.zeros(4, np.float32), 1, (2,), (3,))}, monkeypatch)
    with pytest.raises(ValueError, match="reads past the end of its storage"):
        read_torch_file(tmp_path / "bad.pth")


def test_reader_explains_legacy_and_foreign_files(tmp_path):
    legacy = tmp_path / "old.pth"
    legacy.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"rest of an old file")
    with pytest.raises(ValueError, match="legacy .* Re-save it with a newer torch"):
        read_torch_file(legacy)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_state_dict(tmp_path / "notes.txt")


# ---------------------------------------------------------------------------------------------------------------
# Converter


class TinyNet(nn.Cell):
    def __init__(self, num_classes=2):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 4, 3, has_bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.classifier = nn.Dense(4, num_classes)


def tiny_torch_state(num_classes=2):
    rng = np.random.default_rng(1)
    shapes = {"conv_stem.weight": (4, 3, 3, 3), "bn1.weight": (4,), "bn1.bias": (4,), "bn1.running_mean": (4,),
              "bn1.running_var": (4,), "classifier.weight": (num_classes, 4), "classifier.bias": (num_classes,)}
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    state["bn1.num_batches_tracked"] = np.array(100, np.int64)
    return state


def test_convert_maps_batchnorm_leaves():
    state = tiny_torch_state()
    params = convert_state_dict(state, TinyNet())
    assert sorted(params) == sorted(p.name for p in TinyNet().get_parameters())
    for torch_key, ms_name in (("bn1.weight", "bn1.gamma"), ("bn1.bias", "bn1.beta"),
                               ("bn1.running_mean", "bn1.moving_mean"), ("bn1.running_var", "bn1.moving_variance"),
                               ("conv_stem.weight", "conv_stem.weight"), ("classifier.weight", "classifier.weight")):
        assert np.array_equal(params[ms_name].asnumpy(), state[torch_key]), torch_key


def test_convert_names_missing_unused_and_mismatched_keys():
    state = tiny_torch_state()
    del state["bn1.running_var"]
    state["head.fc.weight"] = np.zeros((2, 4), np.float32)
    state["classifier.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as err:
        convert_state_dict(state, TinyNet())
    message = str(err.value)
    assert "without a checkpoint tensor: bn1.moving_variance" in message
    assert "without a MindSpore parameter: head.fc.weight" in message
    assert "classifier.bias (3,) vs classifier.bias (2,)" in message


def test_convert_renames_and_excluded_head():
    state = {k.replace("conv_stem.", "stem.conv."): v for k, v in tiny_torch_state(num_classes=5).items()}
    params = convert_state_dict(state, TinyNet(), renames=[(r"^stem\.conv\.", "conv_stem.")], exclude=["classifier"])
    assert np.array_equal(params["conv_stem.weight"].asnumpy(), state["stem.conv.weight"])
    assert not any(name.startswith("classifier") for name in params)


# ---------------------------------------------------------------------------------------------------------------
# Parity with timm (PyTorch reference environment)

_REFERENCE = r"""
import argparse, sys
import numpy as np
import tvshim  # noqa: F401  (before timm)
import timm, torch
from safetensors.torch import save_file

out = sys.argv[1]
torch.manual_seed(0)
arrays = {"x": torch.randn(2, 3, 64, 64)}
for name in sys.argv[2:]:
    model = timm.create_model(name, pretrained=False)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # Running statistics of a real batch, then perturbed, and random affine terms: eval-mode BN is really used.
    for bn in bns:
        bn.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 64, 64))
        for bn in bns:
            bn.running_mean += 0.1 * torch.randn_like(bn.running_mean)
            bn.running_var *= torch.empty_like(bn.running_var).uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
        arrays[name] = model.eval()(arrays["x"])
    state = model.state_dict()
    torch.save(state, f"{out}/{name}.pth")
    if name == "ghostnet_050":
        save_file(state, f"{out}/{name}.safetensors")
        # timm's training checkpoint: EMA weights beside DataParallel-prefixed raw weights (here: EMA + 1).
        torch.save({"epoch": 7, "arch": name, "args": argparse.Namespace(model=name, lr=0.4), "version": 2,
                    "state_dict": {"module." + k: v + 1 for k, v in state.items()},
                    "optimizer": torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9).state_dict(),
                    "state_dict_ema": state, "metric": 66.2}, f"{out}/{name}_train.pth.tar")
np.savez(f"{out}/reference.npz", **{k: v.numpy() for k, v in arrays.items()})
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch_reference.require("torch", "timm", "safetensors")
    out = tmp_path_factory.mktemp("timm_ghostnet")
    torch_reference.run(_REFERENCE, out, *GHOSTNETS)
    with np.load(out / "reference.npz") as arrays:
        return out, dict(arrays)


def max_logit_difference(net, arrays, name):
    net.set_train(False)
    return float(np.abs(net(ms.Tensor(arrays["x"])).asnumpy() - arrays[name]).max())


@pytest.mark.parametrize("name", GHOSTNETS)
def test_converted_timm_weights_give_timm_logits(reference, name):
    out, arrays = reference
    net = create_model(name)
    not_loaded, unused = ms.load_param_into_net(net, convert_state_dict(load_state_dict(out / f"{name}.pth"), net),
                                                strict_load=True)
    assert not not_loaded and not unused
    diff = max_logit_difference(net, arrays, name)
    assert diff <= 1e-4, f"{name}: max |logit difference| {diff:.3g} (logit scale {np.abs(arrays[name]).max():.3g})"


def test_safetensors_reads_like_pth(reference):
    out, _ = reference
    pth, safetensors = load_state_dict(out / "ghostnet_050.pth"), load_state_dict(out / "ghostnet_050.safetensors")
    assert sorted(pth) == sorted(safetensors)
    assert all(pth[k].dtype == safetensors[k].dtype and np.array_equal(pth[k], safetensors[k]) for k in pth)


def test_cli_converts_training_checkpoint(reference, tmp_path, capsys):
    out, arrays = reference
    tar = out / "ghostnet_050_train.pth.tar"
    convert_main(["--model", "ghostnet_050", "--input", str(tar), "--output", str(tmp_path / "ema.ckpt"),
                  "--use-ema"])
    net = create_model("ghostnet_050")
    assert ms.load_param_into_net(net, ms.load_checkpoint(str(tmp_path / "ema.ckpt")), strict_load=True) == ([], [])
    assert max_logit_difference(net, arrays, "ghostnet_050") <= 1e-4

    convert_main(["--model", "ghostnet_050", "--input", str(tar), "--output", str(tmp_path / "ft.ckpt"),
                  "--num-classes", "10"])
    assert "freshly initialised (new classifier): classifier.weight, classifier.bias" in capsys.readouterr().out
    saved = ms.load_checkpoint(str(tmp_path / "ft.ckpt"))
    ema = load_state_dict(tar, use_ema=True)
    assert saved["classifier.weight"].shape == (10, 1280)
    assert np.array_equal(saved["bn1.gamma"].asnumpy(), ema["bn1.weight"] + 1)  # 'state_dict', not the EMA
