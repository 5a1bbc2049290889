"""The MindSpore model zoo's GhostNet checkpoints (research/cv/ghostnet, also on MindSpore Hub) map onto this repo's
models key for key, through the converter and through the loaders.

The zoo is not a package, so its parameter names and shapes are derived here from its source as read, not from this
repo's models (src/ghostnet.py: ghostnet_1x, ghostnet_nose_1x; src/ghostnet600.py: ghostnet_600m): SequentialCell
children are named by index, a ConvUnit holds `conv` (no bias) and `bn` (gamma, beta, moving_mean,
moving_variance), SE convs, the head conv and the classifier have biases. Each key is paired with the name it must
take here from its position in the walk (stage, block), independently of the converter's rename rules.
"""
import math

import mindspore as ms
import numpy as np
import pytest

from scripts.convert_checkpoint import main as convert_main
from src.checkpoint import CheckpointError, load_pretrained, load_weights
from src.models import create_model

# ghostnet.py "1x": kernel, expansion, out, SE, stride ("nose_1x": the same without SE).
ZOO_1X = ((3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 1, 2), (5, 120, 40, 1, 1),
          (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 1, 1),
          (3, 672, 112, 1, 1), (5, 672, 160, 1, 2), (5, 960, 160, 0, 1), (5, 960, 160, 1, 1), (5, 960, 160, 0, 1),
          (5, 960, 160, 1, 1))
# ghostnet600.py "600M": kernel, out, expansion ratio (of the block's input), stride; SE ratio 10 everywhere.
ZOO_600 = ((3, 16, 1, 1), (3, 24, 3, 2), (3, 24, 3, 1), (5, 40, 3, 2), (3, 40, 3, 1), (3, 40, 3, 1), (3, 80, 6, 2),
           *((3, 80, 2.5, 1),) * 3, *((3, 112, 6, 1),) * 3, (5, 160, 6, 2), *((3, 160, 6, 1),) * 5)
# Bottlenecks per stage of this repo's networks (the strided block alone, as in the official PyTorch code).
STAGES = {"1x": (1, 1, 1, 1, 1, 1, 5, 1, 4), "nose_1x": (1, 1, 1, 1, 1, 1, 5, 1, 4), "600": (1, 1, 1, 1, 2, 1, 6, 1, 5)}
VARIANTS = (("1x", "ghostnet_100"), ("nose_1x", "ghostnet_100_nose"), ("600", "ghostnet_600"))
BN_LEAVES = ("moving_mean", "moving_variance", "gamma", "beta")


def round_up4(value):
    """ghostnet.py's _make_divisible."""
    return int(np.ceil(value / 4) * 4)


def nearest(value, divisor):
    """ghostnet600.py's _make_divisible: nearest multiple, never more than 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def zoo_rows(variant):
    """-> (stem, [(kernel, mid, out, se_mid, stride)], final in, final out, head) of a zoo network."""
    if variant == "600":
        stem = nearest(16 * 1.75, 4)
        rows, cin = [], stem
        for kernel, out, ratio, stride in ZOO_600:
            mid = nearest(cin * ratio, 8)
            cin = nearest(out * 1.75, 4)
            rows.append((kernel, mid, cin, nearest(mid // 10, 8), stride))
        return stem, rows, nearest(1.75 * 160, 8), nearest(1.75 * 960, 8), 1400
    rows = [(kernel, round_up4(exp), round_up4(out), round_up4(round_up4(exp) // 4) if se and variant == "1x" else 0,
             stride) for kernel, exp, out, se, stride in ZOO_1X]
    return 16, rows, 160, 960, 1280


def zoo_layout(variant, num_classes):
    """[(zoo key, shape, key here)] of the zoo network `variant` ("1x", "nose_1x", "600")."""
    entries = []

    def conv_unit(zoo, conv, bn, cin, cout, kernel, groups=1):
        entries.append((f"{zoo}.conv.weight", (cout, cin // groups, kernel, kernel), f"{conv}.weight"))
        entries.extend((f"{zoo}.bn.{leaf}", (cout,), f"{bn}.{leaf}") for leaf in BN_LEAVES)

    def ghost_module(zoo, ours, cin, cout):
        init = math.ceil(cout / 2)
        for part, (c_in, kernel, groups) in (("primary_conv", (cin, 1, 1)), ("cheap_operation", (init, 3, init))):
            conv_unit(f"{zoo}.{part}", f"{ours}.{part}.0", f"{ours}.{part}.1", c_in, init, kernel, groups)

    stem, rows, final_in, final_out, head = zoo_rows(variant)
    entries.append(("conv_stem.weight", (stem, 3, 3, 3), "conv_stem.weight"))
    entries.extend((f"bn1.{leaf}", (stem,), f"bn1.{leaf}") for leaf in BN_LEAVES)
    positions = [(stage, block) for stage, size in enumerate(STAGES[variant]) for block in range(size)]
    cin = stem
    for index, ((kernel, mid, out, se_mid, stride), (stage, block)) in enumerate(zip(rows, positions, strict=True)):
        zoo, ours = f"blocks.{index}", f"blocks.{stage}.{block}"
        ghost_module(f"{zoo}.ghost1", f"{ours}.ghost1", cin, mid)
        if stride > 1:
            conv_unit(f"{zoo}.dw", f"{ours}.conv_dw", f"{ours}.bn_dw", mid, mid, kernel, groups=mid)
        if se_mid:
            for conv, shape in (("conv_reduce", (se_mid, mid, 1, 1)), ("conv_expand", (mid, se_mid, 1, 1))):
                entries.append((f"{zoo}.se.{conv}.weight", shape, f"{ours}.se.{conv}.weight"))
                entries.append((f"{zoo}.se.{conv}.bias", shape[:1], f"{ours}.se.{conv}.bias"))
        ghost_module(f"{zoo}.ghost2", f"{ours}.ghost2", mid, out)
        if cin != out or stride != 1:
            conv_unit(f"{zoo}.shortcut.0", f"{ours}.shortcut.0", f"{ours}.shortcut.1", cin, cin, kernel, groups=cin)
            conv_unit(f"{zoo}.shortcut.1", f"{ours}.shortcut.2", f"{ours}.shortcut.3", cin, out, 1)
        cin = out
    assert final_in == cin
    final = f"blocks.{len(STAGES[variant])}.0"
    conv_unit(f"blocks.{len(rows)}", f"{final}.conv", f"{final}.bn1", cin, final_out, 1)
    entries += [("conv_head.weight", (head, final_out, 1, 1), "conv_head.weight"),
                ("conv_head.bias", (head,), "conv_head.bias"),
                ("classifier.weight", (num_classes, head), "classifier.weight"),
                ("classifier.bias", (num_classes,), "classifier.bias")]
    return entries


def write_zoo_checkpoint(path, variant, num_classes=1000, seed=0):
    """A checkpoint as the zoo's ModelCheckpoint writes it (weights plus Momentum's state) -> (values, entries)."""
    rng = np.random.default_rng(seed)
    entries = zoo_layout(variant, num_classes)
    values = {key: rng.standard_normal(shape).astype(np.float32) for key, shape, _ in entries}
    state = {f"moments.{key}": np.zeros_like(value) for key, value in values.items() if "moving_" not in key}
    state.update(learning_rate=np.full(4, 0.1, np.float32), momentum=np.array(0.9, np.float32),
                 global_step=np.array([1000], np.int32))
    ms.save_checkpoint([{"name": key, "data": ms.Tensor(value)} for key, value in {**values, **state}.items()],
                       str(path))
    return values, entries


@pytest.mark.parametrize("variant,model", VARIANTS)
def test_zoo_checkpoint_converts_key_for_key(tmp_path, capsys, variant, model):
    values, entries = write_zoo_checkpoint(tmp_path / "zoo.ckpt", variant)
    convert_main(["--model", model, "--input", str(tmp_path / "zoo.ckpt"), "--output", str(tmp_path / "ours.ckpt")])
    printed = capsys.readouterr().out
    source = "src/ghostnet600.py" if variant == "600" else "src/ghostnet.py"
    without_se = ", without SE" if variant == "nose_1x" else ""
    assert f"is in the MindSpore model zoo's layout ({source}{without_se})" in printed
    assert "ignored" in printed and "learning_rate, momentum, global_step" in printed
    saved = ms.load_checkpoint(str(tmp_path / "ours.ckpt"))
    assert sorted(saved) == sorted(ours for _, _, ours in entries)  # every key used, every parameter filled
    for zoo, shape, ours in entries:
        assert saved[ours].shape == shape and np.array_equal(saved[ours].asnumpy(), values[zoo]), (zoo, ours)


def test_zoo_checkpoint_loads_unconverted(tmp_path, capsys):
    path = str(tmp_path / "ghostnet_nose_1x_pets.ckpt")
    values, entries = write_zoo_checkpoint(path, "nose_1x", num_classes=37)
    net = create_model("ghostnet_100_nose", num_classes=37)
    assert load_weights(net, path) == "trained"
    assert f"checkpoint {path} is in the MindSpore model zoo's layout" in capsys.readouterr().out
    params = {p.name: p for p in net.get_parameters()}
    assert all(np.array_equal(params[ours].asnumpy(), values[zoo]) for zoo, _, ours in entries)

    fine_tuned = create_model("ghostnet_100_nose", num_classes=10)
    assert load_pretrained(fine_tuned, path, "classifier") == ["classifier.weight", "classifier.bias"]
    assert np.array_equal(fine_tuned.conv_head.weight.asnumpy(), values["conv_head.weight"])


def test_zoo_checkpoint_that_fits_nothing_names_keys(tmp_path):
    path = str(tmp_path / "ghostnet_1x.ckpt")
    values, _ = write_zoo_checkpoint(path, "1x")
    with pytest.raises(CheckpointError, match=r"(?s)missing from the checkpoint \(108\): blocks\.0\.0\.se\.conv_reduce"
                                              r".*wrong shape.*conv_stem\.weight \(16, 3, 3, 3\) vs \(28, 3, 3, 3\)"):
        load_weights(create_model("ghostnet_600"), path)
    with pytest.raises(CheckpointError, match="not in the mindcv layout but in the zoo one"):
        convert_main(["--model", "ghostnet_100", "--input", path, "--output", str(tmp_path / "x.ckpt"),
                      "--format", "mindcv"])
    cut = {key: value for key, value in values.items() if not key.startswith("blocks.1")}  # blocks.0, 2 ... 9
    ms.save_checkpoint([{"name": key, "data": ms.Tensor(value)} for key, value in cut.items()],
                       str(tmp_path / "cut.ckpt"))
    with pytest.raises(CheckpointError, match=r"has 9 entries blocks\.0 \.\.\.; known variants have 17"):
        load_weights(create_model("ghostnet_100"), str(tmp_path / "cut.ckpt"))
