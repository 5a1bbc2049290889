"""scripts/visualize_features.py and src/analysis/redundancy.py: the redundancy figures on hand-made maps, the layer
capture against the cell run by hand, and end-to-end runs on small models (random weights, 32 px) that write the
PNG grid and the JSON, compare plain VGG-16 (ghost_ratio 1) with Ghost-VGG-16 on a dataset image, and name the
closest valid layer when the name is wrong.
"""
import json

import mindspore
import numpy as np
import pytest
from PIL import Image

from scripts.visualize_features import VisualizeError, capture_layer, main as visualize_main
from src.models import create_model
from src.models.ghost_vgg import GhostVGG
from src.analysis.redundancy import (channel_redundancy, cosine_similarity_matrix, nearest_channels, redundancy_score,
                                  top_pairs)
from tests.data_fixtures import make_idx_dataset
from tests.engine_fixtures import tiny_net  # noqa: F401  (registers the tiny_net model)
from tests.test_export import write_checkpoint

TINY = ["--model", "ghostnet_050", "--width", "0.25", "--small_input", "true", "--dataset", "cifar10",
        "--image_size", "32"]
LAYER = "blocks.1.0.ghost1.primary_conv"


# --- redundancy figures ----------------------------------------------------------------------------------------

def test_identical_and_scaled_channels_are_fully_redundant():
    base = np.random.default_rng(0).standard_normal((5, 5))
    maps = np.stack([base, base, 3.0 * base])
    np.testing.assert_allclose(cosine_similarity_matrix(maps), np.ones((3, 3)), atol=1e-12)
    assert redundancy_score(cosine_similarity_matrix(maps)) == pytest.approx(1.0)


def test_orthogonal_channels_are_not_redundant():
    maps = np.eye(4).reshape(4, 2, 2)  # each map lights a different pixel
    sim = cosine_similarity_matrix(maps)
    np.testing.assert_allclose(sim, np.eye(4), atol=1e-12)
    assert redundancy_score(sim) == pytest.approx(0.0)


def test_mean_of_each_channels_best_match():
    """Two copies of one map and an orthogonal third: best matches 1, 1, 0 -> 2/3."""
    e0, e1 = np.eye(2)
    sim = cosine_similarity_matrix(np.stack([e0, e0, e1]))
    index, value = nearest_channels(sim)
    assert list(index) == [1, 0, 0] and list(value) == pytest.approx([1.0, 1.0, 0.0])
    assert redundancy_score(sim) == pytest.approx(2 / 3)


def test_top_pairs_are_the_most_similar_first():
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((5, 6, 6))
    maps[3] = maps[1] + 0.05 * rng.standard_normal((6, 6))  # a near-copy: (1, 3) is the top pair
    maps[4] = maps[0] + 0.5 * rng.standard_normal((6, 6))  # a looser one: (0, 4) second
    pairs = top_pairs(cosine_similarity_matrix(maps), k=2)
    assert [(a, b) for a, b, _ in pairs] == [(1, 3), (0, 4)]
    flat = maps.reshape(5, -1)
    expected = flat[1] @ flat[3] / np.linalg.norm(flat[1]) / np.linalg.norm(flat[3])
    assert pairs[0][2] == pytest.approx(expected)
    assert len(top_pairs(cosine_similarity_matrix(maps), k=100)) == 10  # every pair once


def test_all_zero_maps_are_counted_and_left_out():
    maps = np.zeros((4, 3, 3))
    maps[0, 0, 0] = maps[1, 0, 0] = 2.0  # identical
    maps[2, 1, 1] = 1.0  # orthogonal to both; channel 3 is dead
    summary = channel_redundancy(maps, k=10)
    assert summary["dead_channels"] == 1 and summary["channels"] == 4
    assert summary["redundancy"] == pytest.approx(2 / 3)
    assert all(3 not in (p["a"], p["b"]) for p in summary["top_pairs"])
    assert summary["nearest"][3] == {"channel": 3, "nearest": -1, "similarity": None}
    assert summary["top_pairs"][0] == {"a": 0, "b": 1, "similarity": pytest.approx(1.0)}
    json.dumps(summary)  # JSON-ready


# --- plain VGG for the comparison ------------------------------------------------------------------------------

def test_ghost_ratio_1_is_plain_convs_with_the_same_names():
    plain, ghost = (GhostVGG((8, "M", 16), num_classes=10, ghost_ratio=s, small_input=True) for s in (1, 2))
    plain_names = {name for name, _ in plain.cells_and_names()}
    assert {"features.0.primary_conv.0", "features.2.primary_conv.0"} <= plain_names
    assert not any("cheap_operation" in name for name in plain_names)
    assert plain_names < {name for name, _ in ghost.cells_and_names()}
    weight = dict(plain.parameters_and_names())["features.2.primary_conv.0.weight"]
    assert tuple(weight.shape) == (16, 8, 3, 3)  # every output map from the conv itself
    with pytest.raises(ValueError, match="ghost_ratio must be >= 1"):
        GhostVGG((8,), ghost_ratio=0)


# --- the script ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "noise.png"
    pixels = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def test_capture_is_the_cells_output():
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    net = create_model("ghostnet_050", num_classes=10, in_channels=3, small_input=True, width=0.25)
    net.set_train(False)
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    maps, calls = capture_layer(net, "conv_stem", x)
    assert calls == 1
    np.testing.assert_allclose(maps, net.conv_stem(mindspore.Tensor(x)).asnumpy(), atol=1e-6)


def test_png_grid_and_json_for_a_checkpoint(tmp_path, image, capsys):
    ckpt = tmp_path / "w.ckpt"
    write_checkpoint(ckpt, "ghostnet_050", num_classes=10, in_channels=3, small_input=True, width=0.25)
    assert visualize_main([*TINY, "--ckpt_path", str(ckpt), "--image", image, "--layer", LAYER, "--pairs", "3",
                           "--output_dir", str(tmp_path / "out")]) == 0
    stem = str(tmp_path / "out" / f"features_ghostnet_050_w0.25_w_{LAYER}_noise")
    with open(stem + ".json", encoding="utf-8") as f:
        report = json.load(f)
    with Image.open(stem + ".png") as png:
        assert png.format == "PNG" and min(png.size) > 200
    assert report["weights"] == "trained" and report["layer"] == LAYER and report["input"] == {"image": image}
    channels = report["map_shape"][0]
    assert report["channels"] == channels == len(report["nearest"]) and len(report["top_pairs"]) == 3
    live = [n["similarity"] for n in report["nearest"] if n["similarity"] is not None]
    assert report["redundancy"] == pytest.approx(np.mean(live))
    sims = [p["similarity"] for p in report["top_pairs"]]
    assert sims == sorted(sims, reverse=True) and sims[0] == pytest.approx(max(live))
    assert f"redundancy (mean over channels of the highest cosine similarity to another): " \
           f"{report['redundancy']:.4f}" in capsys.readouterr().out


def test_compare_plain_and_ghost_vgg_on_a_dataset_image(tmp_path, capsys):
    data_dir = make_idx_dataset(str(tmp_path / "idx"), n_train=4, n_test=6, size=32)
    common = ["--model", "ghost_vgg16", "--dataset", "fashion_mnist", "--data_dir", data_dir, "--image_size", "32",
              "--output_dir", str(tmp_path / "out")]
    assert visualize_main([*common, "--index", "4", "--split", "test", "--layer", "features.3", "--ghost_ratio", "1",
                           "--compare", "--ghost_ratio", "2"]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "out" / "redundancy_compare_test4.json").read_text())
    assert [r["ghost_ratio"] for r in rows] == [1, 2]
    assert [r["map_shape"] for r in rows] == [[128, 16, 16]] * 2
    for r in rows:
        assert (tmp_path / "out" / f"features_ghost_vgg16_s{r['ghost_ratio']}_features.3_test4.png").is_file()
        assert f"{r['label']:<48} features.3" in out and f"{r['redundancy']:.4f}" in out
    report = json.loads((tmp_path / "out" / "features_ghost_vgg16_s1_features.3_test4.json").read_text())
    assert report["input"]["index"] == 4 and report["input"]["label"] == 4  # label j % 10 in the fixture


def test_redundancy_over_consecutive_images_is_each_images_own(tmp_path, capsys):
    """--images K runs K images as one batch; each image's figure must be the one it gives alone (eval-mode BN)."""
    data_dir = make_idx_dataset(str(tmp_path / "idx"), n_train=4, n_test=6, size=32)
    common = [*TINY, "--dataset", "fashion_mnist", "--data_dir", data_dir, "--layer", LAYER, "--split", "test",
              "--eval_batch_size", "4", "--output_dir", str(tmp_path / "out")]
    assert visualize_main([*common, "--index", "1", "--images", "4", "--compare", "--width", "0.5"]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "out" / "redundancy_compare_test1.json").read_text())
    for row in rows:
        over = row["redundancy_over_images"]
        assert over["first"] == 1 and over["count"] == 4 and len(over["per_image"]) == 4  # across two batches
        assert over["per_image"][0] == pytest.approx(row["redundancy"])
        assert over["mean"] == pytest.approx(np.mean(over["per_image"]))
        assert f"{over['mean']:.4f} +- {over['std']:.4f}" in out
    assert len({round(r, 6) for r in rows[0]["redundancy_over_images"]["per_image"]}) > 1  # images differ
    assert visualize_main([*common, "--index", "3"]) == 0  # image 3 alone, the third of the batch above
    alone = json.loads((tmp_path / "out" / f"features_ghostnet_050_w0.25_{LAYER}_test3.json").read_text())
    assert alone["redundancy"] == pytest.approx(rows[0]["redundancy_over_images"]["per_image"][2], abs=1e-5)
    with pytest.raises(VisualizeError, match="--index 4 --images 3 is outside the 6 images of the test split"):
        visualize_main([*common, "--index", "4", "--images", "3"])
    with pytest.raises(VisualizeError, match="--images K needs --index N"):
        visualize_main([*TINY, "--image", "x.png", "--layer", LAYER, "--images", "2"])


def test_unknown_layer_names_the_closest(tmp_path, image):
    argv = [*TINY, "--image", image, "--output_dir", str(tmp_path)]
    with pytest.raises(VisualizeError) as err:
        visualize_main([*argv, "--layer", "blocks.1.0.ghost1.primary_cov"])
    message = str(err.value)
    assert message.startswith("unknown layer 'blocks.1.0.ghost1.primary_cov' in ghostnet_050 "
                              "(closest: 'blocks.1.0.ghost1.primary_conv'")
    assert "cells in 'blocks.1.0.ghost1': blocks.1.0.ghost1.primary_conv, blocks.1.0.ghost1.cheap_operation" in message
    assert "--list_layers" in message
    with pytest.raises(VisualizeError, match="outputs \\(1, 10\\), not feature maps"):
        visualize_main([*argv, "--layer", "classifier", "--num_classes", "10"])
    assert not list(tmp_path.glob("*.png"))


def test_unknown_layer_of_a_small_network_lists_every_name(tmp_path, image):
    with pytest.raises(VisualizeError, match="valid names: conv_stem, bn1, conv_head, bn2, dropout, classifier"):
        visualize_main(["--model", "tiny_net", "--dataset", "cifar10", "--in_channels", "3", "--image", image,
                        "--image_size", "32", "--layer", "conv", "--output_dir", str(tmp_path)])


def test_a_key_visualize_features_does_not_read_is_an_error_naming_where_it_belongs(image):
    from src.config import ConfigError
    with pytest.raises(ConfigError, match="--lr is not a flag of visualize_features.py: it is read by train.py"):
        visualize_main([*TINY, "--image", image, "--layer", LAYER, "--lr", "0.1"])
    with pytest.raises(ConfigError, match="--epochs is not a flag of visualize_features.py"):
        visualize_main([*TINY, "--image", image, "--layer", LAYER, "--compare", *TINY, "--epochs", "3"])
