"""Data pipeline: every on-disk format, the batch contract, sharding, augmentation and error messages."""
import logging
import os

import numpy as np
import pytest

from src.config import Config
from src.data import DatasetError, DatasetNotFoundError, create_dataset
from src.data.transforms import parse_rand_augment
from tests.data_fixtures import (CIFAR10_CLASSES, class_level, make_cifar10_binary, make_idx_dataset,
                                 make_image_folder, make_oxford_pets, write_idx)

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _cfg(dataset, data_dir, **overrides):
    values = dict(dataset=dataset, data_dir=str(data_dir), image_size=32, batch_size=4, num_workers=2, seed=0)
    return Config(**{**values, **overrides})


def _batches(dataset):
    return list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


def _pixels(images, info):
    """Undo the normalisation: NCHW float -> the uint8 values that went in."""
    mean = np.array(info.mean).reshape(1, -1, 1, 1) * 255
    std = np.array(info.std).reshape(1, -1, 1, 1) * 255
    return np.rint(images * std + mean)


def _sample_ids(images, info):
    """The index the IDX / CIFAR fixtures write into pixels (0, 0) and (0, 1)."""
    pixels = _pixels(images, info)
    return (pixels[:, 0, 0, 0] + 256 * pixels[:, 0, 0, 1]).astype(int)


def _labels(batches):
    return np.concatenate([label for _, label in batches])


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name, first_class", [("fashion_mnist", "T-shirt/top"), ("mnist", "0")])
def test_idx_eval_batches_in_order(tmp_path, gz, name, first_class):
    make_idx_dataset(tmp_path, n_train=40, n_test=13, gz=gz)
    dataset, info = create_dataset(_cfg(name, tmp_path, image_size=28, eval_batch_size=5), "val", False)
    batches = _batches(dataset)
    assert (info.num_classes, info.num_samples, info.in_channels, info.class_names[0]) == (10, 13, 1, first_class)
    assert [b[0].shape for b in batches] == [(5, 1, 28, 28)] * 2 + [(3, 1, 28, 28)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    ids = np.concatenate([_sample_ids(images, info) for images, _ in batches])
    np.testing.assert_array_equal(ids, np.arange(13))
    np.testing.assert_array_equal(_labels(batches), np.arange(13) % 10)


def test_idx_training_grey_with_every_augmentation(tmp_path):
    make_idx_dataset(tmp_path, n_train=40, n_test=8)
    cfg = _cfg("fashion_mnist", tmp_path, batch_size=8, random_crop_padding=4, color_jitter=0.4,
               auto_augment="rand-m9-mstd0.5", re_prob=0.5)
    dataset, _ = create_dataset(cfg, "train", True)
    batches = _batches(dataset)
    assert dataset.get_dataset_size() == len(batches) == 5
    images, labels = batches[0]
    assert images.shape == (8, 1, 32, 32) and images.dtype == np.float32
    assert labels.shape == (8, 10) and labels.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(_labels(batches).argmax(1)), [4] * 10)  # one-hot of each sample


@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_binary(tmp_path, nested):
    folder = make_cifar10_binary(tmp_path, n_train=50, n_test=12)
    cfg = _cfg("cifar10", tmp_path if nested else folder, eval_batch_size=5)
    dataset, info = create_dataset(cfg, "test", False)
    batches = _batches(dataset)
    assert info.class_names == CIFAR10_CLASSES and info.num_samples == 12 and info.in_channels == 3
    assert batches[0][0].shape == (5, 3, 32, 32) and batches[-1][0].shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(np.concatenate([_sample_ids(i, info) for i, _ in batches]), np.arange(12))
    np.testing.assert_array_equal(_pixels(batches[0][0], info)[:, :, 0, 2], [[0, 1, 2]] * 5)  # RGB order
    np.testing.assert_array_equal(_labels(batches), np.arange(12) % 10)
    train, train_info = create_dataset(_cfg("cifar10", folder, batch_size=10, random_crop_padding=4), "train", True)
    assert train_info.num_samples == 50 and train.get_dataset_size() == 5


def test_image_folder_png_and_jpeg(tmp_path):
    make_image_folder(tmp_path, per_class={"train": 4, "val": 3}, classes=3, size=(40, 56), ext=("png", "jpg"))
    dataset, info = create_dataset(_cfg("folder", tmp_path, eval_batch_size=4), "val", False)
    batches = _batches(dataset)
    assert info.class_names == ("class_0", "class_1", "class_2") and info.num_samples == 9
    assert [b[0].shape for b in batches] == [(4, 3, 32, 32)] * 2 + [(1, 3, 32, 32)]
    labels = _labels(batches)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    means = np.concatenate([_pixels(images, info).mean(axis=(1, 2, 3)) for images, _ in batches])
    np.testing.assert_allclose(means, class_level(labels, 3), atol=4)  # each image kept its label
    cfg = _cfg("imagenet", tmp_path, color_jitter=0.4, auto_augment="rand-m9-n2", re_prob=0.5, mixup=0.8)
    train, _ = create_dataset(cfg, "train", True)
    images, soft = _batches(train)[0]
    assert images.shape == (4, 3, 32, 32) and soft.shape == (4, 3) and soft.dtype == np.float32


def test_oxford_pets(tmp_path):
    make_oxford_pets(tmp_path, n_trainval=2, n_test=1, breeds=3)
    train, info = create_dataset(_cfg("pets", tmp_path, image_size=24), "train", True)
    assert info.class_names == ("Abyssinian", "American Bulldog", "American Pit Bull Terrier")
    assert info.num_samples == 6 and _batches(train)[0][0].shape == (4, 3, 24, 24)
    val, val_info = create_dataset(_cfg("pets", tmp_path, image_size=24), "val", False)
    assert val_info.num_samples == 3 and val_info.class_names == info.class_names
    np.testing.assert_array_equal(_labels(_batches(val)), [0, 1, 2])


@pytest.mark.parametrize("fmt, n", [("fashion_mnist", 10), ("folder", 8)])
def test_training_shards_see_each_sample_once(tmp_path, fmt, n):
    if fmt == "folder":  # one image per class: the label names the sample
        make_image_folder(tmp_path, per_class={"train": 1}, classes=n, size=(12, 12))
    else:
        make_idx_dataset(tmp_path, n_train=n, n_test=1)
    seen = []
    for shard_id in range(2):
        cfg = _cfg(fmt, tmp_path, image_size=16, batch_size=n // 2)
        seen.append(_labels(_batches(create_dataset(cfg, "train", True, 2, shard_id)[0])).argmax(1))
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(n))


def test_eval_shards_cover_every_image_once(tmp_path):
    make_idx_dataset(tmp_path, n_train=10, n_test=13)
    ids = []
    for shard_id in range(3):
        dataset, info = create_dataset(_cfg("mnist", tmp_path, image_size=28, eval_batch_size=2), "val", False,
                                       3, shard_id)
        ids += [_sample_ids(images, info) for images, _ in _batches(dataset)]
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(13))


def test_mixup_and_cutmix_soft_labels_sum_to_one(tmp_path):
    make_idx_dataset(tmp_path, n_train=64, n_test=1)
    cfg = _cfg("fashion_mnist", tmp_path, batch_size=16, random_crop_padding=2, mixup=0.8, cutmix=1.0)
    labels = _labels(_batches(create_dataset(cfg, "train", True)[0]))
    assert labels.shape == (64, 10) and labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
    assert labels.max(1).min() < 1.0  # some targets were mixed


def test_rand_augment_strings():
    assert parse_rand_augment("rand-m9-mstd0.5") == (2, 9, 0.5)
    assert parse_rand_augment("rand-n3-m5") == (3, 5, 0.0)
    for bad in ["augmix-m5", "rand-m11", "rand-m9-x1", "rand-m2.5"]:
        with pytest.raises(DatasetError, match="auto_augment"):
            parse_rand_augment(bad)


def _break(tmp_path, case):
    """Make the broken dataset of `case`; return (dataset name, data_dir, split, config overrides)."""
    if case == "no data_dir":
        return "folder", tmp_path / "absent", "train", {}
    if case in ("no split folder", "no class folders", "empty class"):
        make_image_folder(tmp_path, per_class={"train": 1}, classes=2)
        if case == "no class folders":
            os.makedirs(tmp_path / "val")
        if case == "empty class":
            os.remove(tmp_path / "train" / "class_1" / "1_0000.png")
        return "folder", tmp_path, "val" if case != "empty class" else "train", {}
    if case.startswith("idx"):
        make_idx_dataset(tmp_path, n_train=8, n_test=6, gz=False)
        labels = tmp_path / "t10k-labels-idx1-ubyte"
        if case == "idx missing":
            os.remove(labels)
        elif case == "idx count":
            write_idx(str(labels), np.zeros(5, np.uint8))
        else:
            labels.write_bytes(labels.read_bytes()[:-2])
        return "mnist", tmp_path, "val", {}
    if case == "cifar missing batch":
        os.remove(os.path.join(make_cifar10_binary(tmp_path), "data_batch_3.bin"))
        return "cifar10", tmp_path, "train", {}
    make_oxford_pets(tmp_path)
    if case == "pets no annotation":
        os.remove(tmp_path / "annotations" / "test.txt")
    elif case == "pets missing image":
        os.remove(tmp_path / "images" / "Abyssinian_7.jpg")
    return "pets", tmp_path, "val", {}


@pytest.mark.parametrize("case, error, message", [
    ("no data_dir", DatasetNotFoundError, r"data_dir not found: .*absent"),
    ("no split folder", DatasetNotFoundError, r"split folder .*val not found"),
    ("no class folders", DatasetError, r"no class folders in .*val"),
    ("empty class", DatasetError, r"class folder .*class_1 holds no images"),
    ("idx missing", DatasetNotFoundError, r"IDX file .*t10k-labels-idx1-ubyte\[\.gz\] not found"),
    ("idx count", DatasetError, r"has 5 labels but .*t10k-images-idx3-ubyte has 6 images"),
    ("idx truncated", DatasetError, r"t10k-labels-idx1-ubyte .*truncated"),
    ("cifar missing batch", DatasetNotFoundError, r"CIFAR-10 binary files not found: .*data_batch_3\.bin"),
    ("pets no annotation", DatasetNotFoundError, r"annotation file not found: .*test\.txt"),
    ("pets missing image", DatasetNotFoundError, r"1 images listed in .*test\.txt are missing, e\.g\. .*7\.jpg"),
])
def test_data_errors_name_the_problem_and_path(tmp_path, case, error, message):
    name, data_dir, split, overrides = _break(tmp_path, case)
    with pytest.raises(error, match=message):
        create_dataset(_cfg(name, data_dir, **overrides), split, split == "train")


@pytest.mark.parametrize("overrides, message", [
    ({"dataset": "fashion-mnist"}, r"unknown dataset 'fashion-mnist' \(did you mean 'fashion_mnist'\?\)"),
    ({"mean": [0.5, 0.5, 0.5]}, r"must give 1 value"),
    ({"batch_size": 64}, r"has 40 images, fewer than batch_size 64"),
])
def test_config_errors(tmp_path, overrides, message):
    make_idx_dataset(tmp_path, n_train=40, n_test=1)
    with pytest.raises(DatasetError, match=message):
        create_dataset(_cfg(**{"dataset": "fashion_mnist", "data_dir": tmp_path, **overrides}), "train", True)
    with pytest.raises(DatasetError, match=r"split 'dev' is not one of"):
        create_dataset(_cfg("fashion_mnist", tmp_path), "dev", False)
    with pytest.raises(DatasetError, match=r"test split of .* has 1 images, fewer than the 2 devices evaluating it"):
        create_dataset(_cfg("fashion_mnist", tmp_path), "test", False, num_shards=2, shard_id=1)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_unreadable_image(tmp_path, caplog, policy):
    make_image_folder(tmp_path, per_class={"val": 3}, classes=2)
    bad = tmp_path / "val" / "class_1" / "1_0001.jpg"
    bad.write_bytes(b"not a jpeg at all")
    dataset, _ = create_dataset(_cfg("folder", tmp_path, bad_images=policy), "val", False)
    if policy == "error":
        with pytest.raises(RuntimeError, match=r"cannot decode image .*1_0001\.jpg"):
            _batches(dataset)
    else:
        with caplog.at_level(logging.WARNING):
            assert len(_labels(_batches(dataset))) == 6
        assert "1_0001.jpg" in caplog.text


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="real Fashion-MNIST not installed")
def test_real_fashion_mnist():
    cfg = _cfg("fashion_mnist", FASHION_MNIST, batch_size=128, random_crop_padding=4)
    train, info = create_dataset(cfg, "train", True)
    assert (info.num_samples, info.num_classes, train.get_dataset_size()) == (60000, 10, 468)
    val, val_info = create_dataset(cfg, "val", False)
    labels = _labels(_batches(val))
    assert val_info.num_samples == 10000 and np.bincount(labels).tolist() == [1000] * 10
