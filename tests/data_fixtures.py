"""Tiny datasets in the real on-disk formats, for tests of any part of the repo.

In every generator sample j of a split has label j % classes and pixels around `class_level(label, classes)`
(noise of +-8), so a model learns the task in a few steps and a test can tell the label from the image.
IDX and CIFAR-10 images also carry their index: pixel (0, 0) holds j % 256 and pixel (0, 1) j // 256; CIFAR-10
pixel (0, 2) holds 0, 1, 2 in its R, G, B channels.
Each function returns the path to give as `data_dir`.
"""
import gzip
import os
import struct

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Oxford-IIIT Pet breeds in class-id order (1..37); capitalised names are cats (species 1), the others dogs.
PETS_BREEDS = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal", "Birman",
    "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
    "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
    "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll",
    "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx",
    "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier")


def class_level(label, classes):
    """Mean pixel value of the images of class `label`."""
    return (np.asarray(label) + 1) * 255 // (classes + 1)


def _class_image(label, classes, shape, rng):
    """One uint8 image of `shape` around the level of its class."""
    return np.clip(class_level(label, classes) + rng.integers(-8, 9, size=shape), 0, 255).astype(np.uint8)


def _tagged_images(n, classes, shape, rng):
    """n images with labels j % classes, index j in pixels (0, 0) and (0, 1) of every channel and, in colour
    images, the channel numbers 0, 1, 2 (R, G, B) in pixel (0, 2)."""
    labels = np.arange(n) % classes
    images = np.stack([_class_image(label, classes, shape, rng) for label in labels])
    index = np.arange(n).reshape((-1,) + (1,) * (len(shape) - 2))
    images[:, 0, 0], images[:, 0, 1] = index % 256, index // 256
    if len(shape) == 3:
        images[:, 0, 2] = np.arange(shape[2])
    return images, labels


def write_idx(path, array):
    """An unsigned-byte IDX file (gzip'ed when `path` ends in .gz)."""
    array = np.ascontiguousarray(array, np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


def make_idx_dataset(root, n_train=60, n_test=20, classes=10, size=28, gz=True, seed=0):
    """MNIST / Fashion-MNIST layout: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in `root`."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _tagged_images(n, classes, (size, size), rng)
        write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte{suffix}"), images)
        write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte{suffix}"), labels)
    return root


def make_cifar10_binary(root, n_train=50, n_test=20, classes=10, seed=0):
    """CIFAR-10 binary version: root/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin + batches.meta.txt.

    The training images are spread over the five batch files (so n_train >= 5). Returns the
    cifar-10-batches-bin folder.
    """
    folder = os.path.join(root, "cifar-10-batches-bin")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n, names in ((n_train, [f"data_batch_{i}.bin" for i in range(1, 6)]), (n_test, ["test_batch.bin"])):
        images, labels = _tagged_images(n, classes, (32, 32, 3), rng)
        records = np.concatenate([labels[:, None].astype(np.uint8),
                                  images.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1)
        for name, part in zip(names, np.array_split(records, len(names))):
            part.tofile(os.path.join(folder, name))
    with open(os.path.join(folder, "batches.meta.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(CIFAR10_CLASSES[:classes]) + "\n\n")
    return folder


def _sized(shape, j):
    """Alternate portrait and landscape so that resize and crop see both."""
    return tuple(shape) if j % 2 == 0 else tuple(shape)[::-1]


def make_image_folder(root, per_class=None, classes=3, size=(40, 56), ext=("png", "jpg"), seed=0):
    """ImageNet-style folders root/<split>/class_<k>/<file>: `per_class` maps split -> images per class
    (default {"train": 4, "val": 2}); file formats cycle through `ext`."""
    rng = np.random.default_rng(seed)
    exts = (ext,) if isinstance(ext, str) else tuple(ext)
    for split, count in (per_class or {"train": 4, "val": 2}).items():
        for k in range(classes):
            folder = os.path.join(root, split, f"class_{k}")
            os.makedirs(folder, exist_ok=True)
            for j in range(count):
                image = _class_image(k, classes, _sized(size, j) + (3,), rng)
                Image.fromarray(image).save(os.path.join(folder, f"{k}_{j:04d}.{exts[j % len(exts)]}"))
    return root


def make_oxford_pets(root, n_trainval=2, n_test=1, breeds=3, size=(40, 56), seed=0):
    """Oxford-IIIT Pet layout: root/images/<Breed>_<n>.jpg, root/annotations/{trainval,test}.txt with lines
    "<image> <class id> <species> <breed id>"; `breeds` first breeds of PETS_BREEDS, n_* images of each."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    names = PETS_BREEDS[:breeds]
    species = [1 if name[0].isupper() else 2 for name in names]
    breed_ids = [species[:i + 1].count(s) for i, s in enumerate(species)]
    number = 0
    for split, count in (("trainval", n_trainval), ("test", n_test)):
        lines = []
        for k, name in enumerate(names):
            for j in range(count):
                number += 1
                image = _class_image(k, breeds, _sized(size, j) + (3,), rng)
                Image.fromarray(image).save(os.path.join(root, "images", f"{name}_{number}.jpg"))
                lines.append(f"{name}_{number} {k + 1} {species[k]} {breed_ids[k]}")
        with open(os.path.join(root, "annotations", f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return root
