"""scripts/predict.py: top-5 with class names, valid JSON, a MINDIR in place of the checkpoint, preprocessing
identical to the evaluation pipeline, and errors that name the problem.

A tiny Fashion-MNIST in its real IDX format gives the class names; its test images are also written as PNG files
for predict.py to read. The model is ghostnet_050 (1 channel, small_input) with random weights.
"""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
import mindspore
from PIL import Image

from export import main as export_main
from scripts.predict import PredictError, main as predict_main
from src.config import load_config
from src.data import DatasetError, create_dataset, image_file_preprocess
from src.data.readers import FASHION_MNIST_CLASSES, load_idx
from tests.data_fixtures import make_idx_dataset, make_image_folder
from tests.test_export import write_checkpoint

N_IMAGES = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Config, checkpoint, PNG folder, and what the checkpoint network says about the eval pipeline's batch."""
    root = tmp_path_factory.mktemp("predict")
    data_dir = make_idx_dataset(str(root / "fashion"), n_train=10, n_test=N_IMAGES)
    folder = root / "images"
    folder.mkdir()
    for j, image in enumerate(load_idx(data_dir, "test")[0]):
        Image.fromarray(image[..., 0]).save(folder / f"{j}.png")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(dict(model="ghostnet_050", small_input=True, dataset="fashion_mnist",
                                          data_dir=data_dir, val_split="test", image_size=28)))
    net = write_checkpoint(root / "w.ckpt", "ghostnet_050", num_classes=10, in_channels=1, small_input=True)
    dataset, _ = create_dataset(load_config(str(config)), "test", training=False)
    (batch, _), = dataset.create_tuple_iterator(output_numpy=True)
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    logits = net(mindspore.Tensor(batch)).asnumpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return SimpleNamespace(root=root, config=str(config), ckpt=str(root / "w.ckpt"), folder=str(folder),
                           batch=batch, probs=probs / probs.sum(1, keepdims=True))


def _json(capsys, argv):
    assert predict_main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_against_network(results, run, names):
    assert [os.path.basename(r["image"]) for r in results] == [f"{j}.png" for j in range(N_IMAGES)]
    for result, probs in zip(results, run.probs):
        top = result["top5"]
        assert [t["index"] for t in top] == list(np.argsort(-probs, kind="stable")[:5])
        assert [t["name"] for t in top] == [names[t["index"]] for t in top]
        np.testing.assert_allclose([t["probability"] for t in top], probs[[t["index"] for t in top]], atol=1e-5)


def test_top5_table_names_the_classes(run, capsys):
    assert predict_main(["--config", run.config, "--ckpt_path", run.ckpt, "--images", run.folder]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == N_IMAGES * 6
    best = FASHION_MNIST_CLASSES[int(np.argmax(run.probs[0]))]
    assert lines[0].endswith("0.png") and lines[1].split()[:2] == ["1.", best.split()[0]]
    assert all(any(name in line for name in FASHION_MNIST_CLASSES) for line in lines[1:6])


def test_json_matches_the_network_on_the_eval_pipeline(run, capsys):
    results = _json(capsys, ["--config", run.config, "--ckpt_path", run.ckpt, "--images", run.folder])
    _check_against_network(results, run, FASHION_MNIST_CLASSES)


def test_mindir_with_a_labels_file(run, capsys):
    assert export_main(["--config", run.config, "--ckpt_path", run.ckpt]) == 0
    capsys.readouterr()
    labels = run.root / "labels.txt"
    names = [f"class {k}" for k in range(10)]
    labels.write_text("\n".join(names) + "\n")
    results = _json(capsys, ["--config", run.config, "--mindir", str(run.root / "w.mindir"), "--labels", str(labels),
                             "--images", *[os.path.join(run.folder, f"{j}.png") for j in range(N_IMAGES)]])
    _check_against_network(results, run, names)


def test_grey_preprocessing_is_the_eval_transform(run):
    cfg = load_config(run.config)
    preprocess = image_file_preprocess(cfg, 1)
    pngs = np.stack([preprocess(os.path.join(run.folder, f"{j}.png")) for j in range(N_IMAGES)])
    np.testing.assert_allclose(pngs, run.batch, atol=1e-6)


def test_colour_preprocessing_is_the_eval_transform(tmp_path):
    """Resize by crop_pct and centre crop of non-square PNG / JPEG files, as the folder pipeline does."""
    make_image_folder(tmp_path, per_class={"val": 2}, classes=2, size=(40, 56))
    cfg = load_config(overrides=dict(dataset="folder", data_dir=str(tmp_path), image_size=32, crop_pct=0.8,
                                     eval_batch_size=4))
    dataset, _ = create_dataset(cfg, "val", training=False)
    (expected, _), = dataset.create_tuple_iterator(output_numpy=True)
    paths = sorted(str(p) for p in tmp_path.glob("val/*/*"))
    preprocess = image_file_preprocess(cfg, 3)
    np.testing.assert_allclose(np.stack([preprocess(p) for p in paths]), expected, atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--labels", "three.txt"], "three.txt names 3 classes, the model predicts 10"),
    (["--images", "missing.png"], "image file or folder not found: missing.png"),
    (["--dataset", "folder", "--data_dir", "/nonexistent"],
     r"no class names: .*w\.ckpt holds none and the train split of the folder data cannot be read .*--labels FILE"),
])
def test_errors_name_the_problem(run, extra, message, monkeypatch):
    monkeypatch.chdir(run.root)
    (run.root / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(PredictError, match=message):
        predict_main(["--config", run.config, "--ckpt_path", run.ckpt, "--images", run.folder, *extra])
    with pytest.raises(PredictError, match="give the model"):
        predict_main(["--config", run.config, "--images", run.folder])


@pytest.mark.parametrize("extra, message", [
    (["--images", "broken.png"], "cannot decode image broken.png"),
    (["--dataset", "fashion-mnist"], r"unknown dataset 'fashion-mnist' \(did you mean 'fashion_mnist'\?\)"),
])
def test_data_errors_name_the_problem(run, extra, message, monkeypatch):
    monkeypatch.chdir(run.root)
    (run.root / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=message):
        predict_main(["--config", run.config, "--ckpt_path", run.ckpt, *extra] +
                     ([] if "--images" in extra else ["--images", run.folder]))
