"""`create_dataset`: one mindspore.dataset pipeline for every supported on-disk format (see docs/CONTRACTS.md)."""
import difflib
import os
from dataclasses import dataclass
from typing import Callable, Tuple

import mindspore.dataset as ds
import numpy as np
from PIL import Image

from src.data.readers import (FASHION_MNIST_CLASSES, MNIST_CLASSES, DatasetError, ImageFiles, SplitNotFoundError,
                              check_fixed_classes, cifar10_class_names, class_folders, load_cifar10, load_idx,
                              load_pets, pets_class_names, scan_image_folder)
from src.data.transforms import (eval_transforms, mix_transform, normalize, one_hot, random_erasing,
                                 train_transforms)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What the model and the engine need to know about a split: head size, input channels, normalisation."""

    num_classes: int
    class_names: Tuple[str, ...]
    num_samples: int  # images in the split, all shards together
    in_channels: int
    mean: Tuple[float, ...]  # in [0, 1] units, as used for normalisation
    std: Tuple[float, ...]


@dataclass(frozen=True)
class _Format:
    """How one `dataset:` name is read and what its defaults are."""

    read: Callable  # (data_dir, split, class_names) -> (uint8 NHWC array or image paths, int32 labels, class names)
    classes: Callable  # (data_dir, split) -> the split's class names, without reading its images
    mean: Tuple[float, ...]  # default statistics; their length is the channel count
    std: Tuple[float, ...]
    imagenet_like: bool  # eval resize + centre crop by default, rather than the whole small image


def _idx_format(own, mean, std):
    def read(data_dir, split, class_names):
        check_fixed_classes(own, class_names, f"the IDX files in {data_dir}")
        return (*load_idx(data_dir, split), own)
    return _Format(read, lambda data_dir, split: own, mean, std, False)


DATASETS = {
    "imagenet": _Format(scan_image_folder, class_folders, IMAGENET_MEAN, IMAGENET_STD, True),
    "folder": _Format(scan_image_folder, class_folders, IMAGENET_MEAN, IMAGENET_STD, True),
    "pets": _Format(load_pets, pets_class_names, IMAGENET_MEAN, IMAGENET_STD, True),
    "mnist": _idx_format(MNIST_CLASSES, (0.1307,), (0.3081,)),
    "fashion_mnist": _idx_format(FASHION_MNIST_CLASSES, (0.2860,), (0.3530,)),
    "cifar10": _Format(load_cifar10, lambda data_dir, split: cifar10_class_names(data_dir),
                       (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), False),
}


def _format(name):
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DatasetError(f"unknown dataset '{name}'{hint}; valid: {', '.join(DATASETS)}")
    return DATASETS[name]


def split_class_names(cfg, split) -> Tuple[str, ...]:
    """The class names of `split` of the config's dataset in label order, reading no image: what a non-training
    split is numbered by (`create_dataset(..., class_names=)`) when no checkpoint names the model's classes."""
    return tuple(_format(cfg.dataset).classes(cfg.data_dir, split))


def dataset_statistics(cfg):
    """(channels, mean, std) of the config's dataset (its own, or the config's mean / std), without reading it."""
    fmt = _format(cfg.dataset)
    return (len(fmt.mean), *_statistics(cfg, fmt))


def image_file_preprocess(cfg, in_channels):
    """path -> float32 CHW array through the evaluation ops of the config's dataset, for single image files
    (predict.py, visualize_features.py). Small-data configs (crop_pct null) resize the whole image, which is square
    in those datasets; any other image is centre-cropped to square afterwards so that it fits the network."""
    fmt = _format(cfg.dataset)
    ops = eval_transforms(cfg, None, fmt.imagenet_like) + [normalize(*_statistics(cfg, fmt))]
    size = cfg.image_size

    def preprocess(path):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("L" if in_channels == 1 else "RGB"))
        except Exception as err:  # Pillow reports unreadable files as OSError, SyntaxError, ValueError...
            raise DatasetError(f"cannot decode image {path}: {err}") from err
        x = pixels[..., None] if pixels.ndim == 2 else pixels
        for op in ops:
            x = op(x)
        top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
        return x[:, top:top + size, left:left + size]

    return preprocess


def _statistics(cfg, fmt):
    mean = tuple(cfg.mean) if cfg.mean is not None else fmt.mean
    std = tuple(cfg.std) if cfg.std is not None else fmt.std
    channels = len(fmt.mean)
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise DatasetError(f"mean {list(mean)} / std {list(std)} must give {channels} value(s), std > 0, "
                           f"for {cfg.dataset} images ({channels} channel(s))")
    return mean, std


@dataclass(frozen=True)
class SplitData:
    """A split as read from disk: uint8 NHWC images or image file paths, int32 labels, and the class names the
    labels index. Reading it lists an image folder's files; a run reads its training split once (EpochData)."""

    images: object
    labels: np.ndarray
    class_names: Tuple[str, ...]


def read_split(cfg, split, training, class_names=None) -> SplitData:
    """`split` of the config's dataset, numbered by `class_names` (None: the split's own list); `training` only
    says which config key chose the split when it is missing."""
    fmt = _format(cfg.dataset)
    try:
        images, labels, class_names = fmt.read(cfg.data_dir, split, class_names)
    except SplitNotFoundError as err:  # say which config key chose the split
        raise SplitNotFoundError(f"{err}; set --{'train_split' if training else 'val_split'}") from None
    if len(labels) == 0:
        raise DatasetError(f"the {split} split of {cfg.data_dir} holds no images")
    if labels.max() >= len(class_names):
        raise DatasetError(f"label {labels.max()} in {cfg.data_dir} ({split}) is out of range for "
                           f"{len(class_names)} classes")
    return SplitData(images, labels, tuple(class_names))


def create_dataset(cfg, split, training, num_shards=1, shard_id=0, class_names=None, data=None):
    """Batched (image float32 NCHW, label) pipeline for `split` and its DatasetInfo.

    `class_names` numbers the labels (the training split's list, or the checkpoint's), so that label k means the
    same class in every split; None takes the split's own list (right for the training split).

    Training: shuffled with cfg.seed, augmented, float32 one-hot (mixed) labels, full batches only; shards
    share each epoch's permutation and are padded to equal length so every rank runs the same number of steps.
    Evaluation: in order, int32 labels, last batch partial; shards take a strided slice without padding so
    every image is evaluated exactly once.
    `data`: the split as `read_split` gave it, for a pipeline over a split already read; None reads it.
    """
    fmt = _format(cfg.dataset)
    if not 0 <= shard_id < num_shards:
        raise DatasetError(f"shard_id {shard_id} is outside 0..{num_shards - 1}")
    data = data if data is not None else read_split(cfg, split, training, class_names)
    images, labels, class_names = data.images, data.labels, data.class_names
    mean, std = _statistics(cfg, fmt)
    info = DatasetInfo(len(class_names), tuple(class_names), len(labels), len(mean), mean, std)
    workers = min(max(1, cfg.num_workers), os.cpu_count() or 1)  # mindspore refuses more than the CPU count

    ds.config.set_seed(cfg.seed)  # one seed for all shards: they must draw the same permutation
    shards = {"num_shards": num_shards, "shard_id": shard_id} if training and num_shards > 1 else {}
    if training and -(-len(labels) // num_shards) < cfg.batch_size:
        raise DatasetError(f"{split} split of {cfg.data_dir} has {len(labels)} images, fewer than batch_size "
                           f"{cfg.batch_size} per shard ({num_shards} shards): no full training batch")
    if not training:
        if len(labels) < num_shards:  # a rank with nothing to evaluate would fail inside MindSpore's pipeline
            raise DatasetError(f"{split} split of {cfg.data_dir} has {len(labels)} images, fewer than the "
                               f"{num_shards} devices evaluating it: run the evaluation on at most {len(labels)}")
        images, labels = images[shard_id::num_shards], labels[shard_id::num_shards]

    encoded = not isinstance(images, np.ndarray)  # image files: their bytes, decoded by the map's first op
    if not encoded:
        dataset = ds.NumpySlicesDataset((images, labels), ["image", "label"], shuffle=training, **shards)
        native_size = images.shape[1]
    else:
        dataset = ds.GeneratorDataset(ImageFiles(images, labels, cfg.bad_images), ["image", "label"],
                                      shuffle=training, num_parallel_workers=workers,
                                      python_multiprocessing=False, **shards)
        native_size = None
    if training:
        ops = train_transforms(cfg, info.in_channels, native_size, mean, encoded)
    else:
        ops = eval_transforms(cfg, native_size, fmt.imagenet_like, encoded)
    dataset = dataset.map(ops, "image", num_parallel_workers=workers)
    batch_size = cfg.batch_size if training else cfg.eval_batch_size or cfg.batch_size
    dataset = dataset.batch(batch_size, drop_remainder=training, num_parallel_workers=workers)
    erase = random_erasing(cfg, mean, shard_id) if training else None
    dataset = dataset.map(([erase] if erase else []) + [normalize(mean, std)], "image", num_parallel_workers=workers)
    if training:
        dataset = dataset.map(one_hot(info.num_classes), "label")
        mix = mix_transform(cfg)
        if mix is not None:
            dataset = dataset.map(mix, ["image", "label"])
    return dataset, info
