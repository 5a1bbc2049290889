"""One class list per dataset: every split's labels are numbered by the training split's classes (or the
checkpoint's), a split lacking some classes is evaluated with zero rows for them, and a class folder the model
never saw is an error naming it. Folder datasets are generated here as 32 px PNG / JPEG files."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import train
import validate
from scripts.predict import main as predict_main
from src.checkpoint import CheckpointError, checkpoint_class_names, read_checkpoint, save_checkpoint
from src.config import Config
from src.data import DatasetError, create_dataset, split_class_names
from src.data.readers import FASHION_MNIST_CLASSES, MNIST_CLASSES
from src.engine.metrics import ClassificationMeter, format_report
from tests.data_fixtures import (CIFAR10_CLASSES, class_level, make_cifar10_binary, make_idx_dataset,
                                 make_oxford_pets)
from tests.engine_fixtures import TinyNet, tiny_config, write_config

TRAIN_ABC = {"a": 4, "b": 4, "c": 4}


def make_folders(root, splits):
    """root/<split>/<class>/<n>.png|jpg from {split: {class: images}}; each class has its own grey level."""
    names = sorted({name for classes in splits.values() for name in classes})
    for split, classes in splits.items():
        for name, count in classes.items():
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            level = class_level(names.index(name), len(names))
            for j in range(count):
                Image.fromarray(np.full((32, 32, 3), level, np.uint8)).save(
                    os.path.join(folder, f"{j}.{'png' if j % 2 else 'jpg'}"))
    return str(root)


def _folder_cfg(data_dir):
    return Config(dataset="folder", data_dir=str(data_dir), image_size=32, batch_size=4, num_workers=1)


def _labels(dataset):
    return np.concatenate([label for _, label in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)])


def test_val_labels_follow_the_training_numbering(tmp_path):
    data_dir = make_folders(tmp_path, {"train": TRAIN_ABC, "val": {"a": 1, "c": 2}})
    cfg = _folder_cfg(data_dir)
    _, train_info = create_dataset(cfg, "train", True)
    val, info = create_dataset(cfg, "val", False, class_names=train_info.class_names)
    assert info.class_names == ("a", "b", "c") and info.num_classes == 3 and info.num_samples == 3
    np.testing.assert_array_equal(_labels(val), [0, 2, 2])  # val/c is class 2, as in training


def test_checkpoint_order_numbers_the_labels(tmp_path):
    data_dir = make_folders(tmp_path, {"val": {"a": 1, "c": 2}})
    val, info = create_dataset(_folder_cfg(data_dir), "val", False, class_names=("c", "b", "a"))
    assert info.class_names == ("c", "b", "a")
    np.testing.assert_array_equal(_labels(val), [0, 0, 2])


def test_class_folder_unknown_to_training_is_an_error_naming_it(tmp_path):
    data_dir = make_folders(tmp_path, {"train": TRAIN_ABC, "val": {"a": 1, "d": 1}})
    os.makedirs(tmp_path / "val" / "b")  # an empty folder: the unknown class is reported before any scan
    cfg = _folder_cfg(data_dir)
    with pytest.raises(DatasetError, match=r"class folder\(s\) .*val/d are not among the 3 classes .*\[a, b, c\]"):
        create_dataset(cfg, "val", False, class_names=split_class_names(cfg, "train"))


def test_split_class_names_reads_no_image(tmp_path):
    data_dir = make_folders(tmp_path / "folder", {"train": TRAIN_ABC})
    os.makedirs(tmp_path / "folder" / "train" / "d")  # listed although empty: its images are never looked at
    assert split_class_names(_folder_cfg(data_dir), "train") == ("a", "b", "c", "d")
    cifar = make_cifar10_binary(tmp_path / "cifar", n_train=5, n_test=2)
    assert split_class_names(Config(dataset="cifar10", data_dir=cifar), "train") == CIFAR10_CLASSES
    assert split_class_names(Config(dataset="mnist", data_dir=str(tmp_path)), "train") == MNIST_CLASSES
    pets = make_oxford_pets(tmp_path / "pets", n_trainval=1, n_test=1, breeds=2)
    assert split_class_names(Config(dataset="pets", data_dir=pets), "train") == ("Abyssinian", "American Bulldog")


def test_fixed_class_lists_must_agree(tmp_path):
    data_dir = make_idx_dataset(str(tmp_path), n_train=8, n_test=4, size=28)
    cfg = Config(dataset="mnist", data_dir=data_dir, image_size=28, num_workers=1)
    assert create_dataset(cfg, "val", False, class_names=MNIST_CLASSES)[1].class_names == MNIST_CLASSES
    with pytest.raises(DatasetError, match=r"IDX files in .* numbers its labels by its own 10 classes \[0, 1, 2.*"
                                           r"not by the 10 classes \[T-shirt/top, Trouser"):
        create_dataset(cfg, "val", False, class_names=FASHION_MNIST_CLASSES)
    cifar = Config(dataset="cifar10", data_dir=make_cifar10_binary(tmp_path / "cifar", n_train=5, n_test=2),
                   num_workers=1)
    with pytest.raises(DatasetError, match=r"CIFAR-10 in .* own 10 classes \[airplane.* not by the 2 classes \[a, b\]"):
        create_dataset(cifar, "test", False, class_names=("a", "b"))


def test_report_of_a_split_without_some_classes():
    """Four classes, no images of 'b' (never predicted) nor 'd' (predicted once): macro over a, c, d as sklearn."""
    meter = ClassificationMeter(4)
    labels = np.array([0, 0, 2, 2])
    meter.update(np.eye(4)[[0, 2, 2, 3]], labels)  # predictions a, c, c, d
    report = meter.report(["a", "b", "c", "d"])
    assert report["classes_without_images"] == ["b", "d"]
    assert report["confusion_matrix"][1] == [0, 0, 0, 0] and report["confusion_matrix"][3] == [0, 0, 0, 0]
    precision, recall = [1.0, 0.5, 0.0], [0.5, 0.5, 0.0]  # a, c, d; d: one false positive, no support
    f1 = [2 / 3, 0.5, 0.0]
    assert report["macro_avg"]["precision"] == pytest.approx(np.mean(precision))
    assert report["macro_avg"]["recall"] == pytest.approx(np.mean(recall))
    assert report["macro_avg"]["f1"] == pytest.approx(np.mean(f1))
    assert report["weighted_avg"]["recall"] == pytest.approx(0.5)  # zero-support classes weigh nothing
    assert "no images of 2 of the 4 classes" in format_report(report) and "predicted): b, d" in format_report(report)


def test_checkpoint_class_names(tmp_path):
    weights = {p.name: p for p in TinyNet(num_classes=2).get_parameters()}
    path = str(tmp_path / "w.ckpt")
    save_checkpoint(path, weights, {"model": "tiny_net"})
    assert checkpoint_class_names(path) is None
    save_checkpoint(path, weights, {"class_names": json.dumps(["cat", "dog"])})
    assert checkpoint_class_names(path) == ("cat", "dog")
    for bad, message in [("cat,dog", "is not a JSON list"), (json.dumps({"cat": 0}), "must be a non-empty JSON"),
                         (json.dumps(["cat", "cat"]), "names cat twice")]:
        save_checkpoint(path, weights, {"class_names": bad})
        with pytest.raises(CheckpointError, match=f"checkpoint {path}: metadata 'class_names' .*{message}"):
            checkpoint_class_names(path)


def _tiny_folder_config(tmp_path, data_dir):
    cfg = tiny_config(tmp_path, dataset="folder", data_dir=data_dir, image_size=32, batch_size=4,
                      eval_batch_size=8, output_dir=str(tmp_path / "eval"), mode="pynative")
    return write_config(cfg, tmp_path / "cfg.yaml")


def _checkpoint(tmp_path, class_names=None):
    path = str(tmp_path / "w.ckpt")
    meta = {"model": "tiny_net"}
    if class_names:
        meta["class_names"] = json.dumps(class_names)
    save_checkpoint(path, {p.name: p for p in TinyNet(num_classes=3, in_channels=3).get_parameters()}, meta)
    return path


def test_train_and_validate_when_val_lacks_a_class(tmp_path, capsys):
    data_dir = make_folders(tmp_path / "data", {"train": TRAIN_ABC, "val": {"a": 2, "c": 3}})
    cfg = tiny_config(tmp_path, dataset="folder", data_dir=data_dir, image_size=32, batch_size=4, epochs=1,
                      max_steps_per_epoch=2, mode="pynative")
    train.main(["--config", write_config(cfg, tmp_path / "train.yaml")])
    assert "3 classes" in capsys.readouterr().out
    report = validate.main(["--config", _tiny_folder_config(tmp_path, data_dir),
                            "--ckpt_path", str(tmp_path / "run" / "epoch_0001.ckpt")])
    out = capsys.readouterr().out
    assert report["class_names"] == ["a", "b", "c"] and report["classes_without_images"] == ["b"]
    assert [sum(row) for row in report["confusion_matrix"]] == [2, 0, 3]
    assert "no images of 1 of the 3 classes" in out
    saved = json.loads((tmp_path / "eval" / "eval_epoch_0001_val.json").read_text())
    assert saved["classes_without_images"] == ["b"]


def test_training_refuses_a_val_class_it_does_not_train(tmp_path):
    data_dir = make_folders(tmp_path / "data", {"train": TRAIN_ABC, "val": {"a": 1, "d": 1}})
    cfg = tiny_config(tmp_path, dataset="folder", data_dir=data_dir, image_size=32, batch_size=4, mode="pynative")
    with pytest.raises(DatasetError, match=r"class folder\(s\) .*val/d are not among the 3 classes"):
        train.main(["--config", write_config(cfg, tmp_path / "train.yaml")])


def test_validate_numbers_by_the_checkpoint(tmp_path, capsys):
    """The checkpoint's order wins over the folders' (and over the training split's, here absent)."""
    data_dir = make_folders(tmp_path / "data", {"val": {"a": 2, "c": 3}})
    ckpt = _checkpoint(tmp_path, ["c", "b", "a"])
    report = validate.main(["--config", _tiny_folder_config(tmp_path, data_dir), "--ckpt_path", ckpt])
    assert f"3 classes, named and numbered as in {ckpt}" in capsys.readouterr().out
    assert report["class_names"] == ["c", "b", "a"] and report["classes_without_images"] == ["b"]
    assert [sum(row) for row in report["confusion_matrix"]] == [3, 0, 2]


def test_validate_with_a_folder_the_checkpoint_does_not_name(tmp_path):
    data_dir = make_folders(tmp_path / "data", {"val": {"a": 1, "c": 1, "e": 1}})
    with pytest.raises(DatasetError, match=r"class folder\(s\) .*val/e are not among the 3 classes .*\[c, b, a\]"):
        validate.main(["--config", _tiny_folder_config(tmp_path, data_dir),
                       "--ckpt_path", _checkpoint(tmp_path, ["c", "b", "a"])])


def test_validate_without_class_names_or_training_split_warns(tmp_path):
    data_dir = make_folders(tmp_path / "data", {"val": {"a": 1, "b": 1, "c": 1}})
    with pytest.warns(UserWarning, match=r"names no classes and the training split cannot be read \(split folder "
                                         r".*train not found.*numbered by its own classes"):
        report = validate.main(["--config", _tiny_folder_config(tmp_path, data_dir),
                                "--ckpt_path", _checkpoint(tmp_path)])
    assert report["class_names"] == ["a", "b", "c"]


def test_predict_names_classes_from_the_checkpoint_else_the_training_split(tmp_path, capsys):
    data_dir = make_folders(tmp_path / "data", {"train": TRAIN_ABC, "val": {"a": 1, "c": 1}})
    image = os.path.join(data_dir, "val", "c", "0.jpg")
    argv = ["--config", _tiny_folder_config(tmp_path, data_dir), "--images", image, "--json"]
    weights, _ = read_checkpoint(_checkpoint(tmp_path))
    for names in (None, ["x", "y", "z"]):
        save_checkpoint(str(tmp_path / "w.ckpt"), weights, {"class_names": json.dumps(names)} if names else None)
        assert predict_main(argv + ["--ckpt_path", str(tmp_path / "w.ckpt")]) == 0
        top = json.loads(capsys.readouterr().out)[0]["top5"]
        assert sorted(t["name"] for t in top) == (names or ["a", "b", "c"])
