"""Readers for the on-disk formats, each checking its files and naming the path of whatever is wrong.

Small datasets (IDX, CIFAR-10 binary) are decoded into uint8 NHWC arrays; image datasets (folders, Oxford Pets)
become file lists whose bytes `ImageFiles` reads lazily, for MindSpore to decode. Every reader takes the class
list its labels are numbered by (the training split's, or a checkpoint's): image folders are read against it,
fixed-list formats check it.
"""
import gzip
import io
import logging
import os
import struct
import threading
import zlib

import numpy as np
from PIL import Image

_logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))


class DatasetError(ValueError):
    """Data that cannot be used as configured; the message names the file or folder and the problem."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A data folder or file that does not exist."""


class SplitNotFoundError(DatasetNotFoundError):
    """A split the data does not have; create_dataset adds the config key that chose it."""


def _require_dir(path, what):
    if not os.path.isdir(path):
        raise DatasetNotFoundError(f"{what} not found: {path}")


def _preview(names, limit=8):
    shown = ", ".join(names[:limit])
    return f"[{shown}{f', ... {len(names) - limit} more' if len(names) > limit else ''}]"


def check_fixed_classes(own, class_names, where):
    """A format with a fixed class list numbers its labels by that list only: another list (e.g. a checkpoint's
    from another dataset) would give the model's outputs the wrong names, so it is an error naming both."""
    if class_names is not None and tuple(class_names) != tuple(own):
        raise DatasetError(f"{where} numbers its labels by its own {len(own)} classes {_preview(own)}, not by the "
                           f"{len(class_names)} classes {_preview(tuple(class_names))} asked for")


def _split_name(split, prefixes, data_dir):
    """Map a config split name onto the files of a dataset with a fixed train/test split."""
    if split not in prefixes:
        raise SplitNotFoundError(f"split '{split}' is not one of {sorted(prefixes)} for the files in {data_dir}")
    return prefixes[split]


# --- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------------------------

def read_idx(path):
    """One IDX file (raw or .gz) -> uint8 array of the shape its header declares."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # EOFError, zlib.error: a truncated or corrupt .gz
        raise DatasetError(f"cannot read IDX file {path}: {err}") from err
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"IDX file {path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise DatasetError(f"IDX file {path} holds {len(data) - header} bytes of data, its header declares "
                           f"shape {shape}: the file is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _idx_path(data_dir, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise DatasetNotFoundError(f"IDX file {os.path.join(data_dir, stem)}[.gz] not found")


def load_idx(data_dir, split):
    """MNIST-style IDX pair for a split -> (images uint8 (N, H, W, 1), labels int32 (N,))."""
    _require_dir(data_dir, "data_dir")
    prefix = _split_name(split, {"train": "train", "val": "t10k", "test": "t10k"}, data_dir)
    images_path = _idx_path(data_dir, f"{prefix}-images-idx3-ubyte")
    labels_path = _idx_path(data_dir, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(f"expected 3-d images in {images_path} and 1-d labels in {labels_path}, "
                           f"got shapes {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images")
    return images[..., None], labels.astype(np.int32)


# --- CIFAR-10 binary version -----------------------------------------------------------------------------------

_CIFAR_RECORD = 1 + 32 * 32 * 3


def _cifar10_root(data_dir):
    _require_dir(data_dir, "data_dir")
    nested = os.path.join(data_dir, "cifar-10-batches-bin")
    return nested if os.path.isdir(nested) else data_dir


def cifar10_class_names(data_dir):
    """The class names of batches.meta.txt, which every split shares."""
    path = os.path.join(_cifar10_root(data_dir), "batches.meta.txt")
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"CIFAR-10 binary files not found: {path}")
    with open(path, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())


def load_cifar10(data_dir, split, class_names=None):
    """CIFAR-10 binary batches -> (images uint8 (N, 32, 32, 3), labels int32 (N,), class names).

    `data_dir` is the `cifar-10-batches-bin` folder or the folder that holds it.
    """
    root = _cifar10_root(data_dir)
    names = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    files = names[_split_name(split, {"train": "train", "val": "test", "test": "test"}, data_dir)]
    paths = [os.path.join(root, name) for name in files + ["batches.meta.txt"]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetNotFoundError(f"CIFAR-10 binary files not found: {', '.join(missing)}")
    own = cifar10_class_names(data_dir)
    check_fixed_classes(own, class_names, f"CIFAR-10 in {root}")
    records = []
    for path in paths[:-1]:
        raw = np.fromfile(path, np.uint8)
        if raw.size == 0 or raw.size % _CIFAR_RECORD:
            raise DatasetError(f"{path} is {raw.size} bytes, not a whole number of {_CIFAR_RECORD}-byte records")
        records.append(raw.reshape(-1, _CIFAR_RECORD))
    records = np.concatenate(records)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int32), own


# --- image files -----------------------------------------------------------------------------------------------

def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(data_dir, split):
    """The class folder names of data_dir/<split>, sorted, without looking inside them."""
    _require_dir(data_dir, "data_dir")
    root = os.path.join(data_dir, split)
    if not os.path.isdir(root):
        present = sorted(e.name for e in os.scandir(data_dir) if e.is_dir())
        raise SplitNotFoundError(f"split folder {root} not found (folders in {data_dir}: {present})")
    names = tuple(sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")))
    if not names:
        raise DatasetError(f"no class folders in {root}: expected {root}/<class>/<image files>")
    return names


def scan_image_folder(data_dir, split, class_names=None):
    """data_dir/<split>/<class>/<image> -> (paths, labels int32, class names).

    Labels are indices into `class_names` (the training split's or the checkpoint's list) when it is given, else
    into the split's own class folders sorted by name. A class folder outside `class_names` is an error, since
    no output of the model stands for it; a class without a folder simply has no images in this split.
    """
    folders = class_folders(data_dir, split)
    root = os.path.join(data_dir, split)
    class_names = folders if class_names is None else tuple(class_names)
    unknown = [os.path.join(root, name) for name in folders if name not in class_names]
    if unknown:
        raise DatasetError(f"class folder(s) {', '.join(unknown)} are not among the {len(class_names)} classes "
                           f"the labels are numbered by {_preview(class_names)} (the training split's or the "
                           f"checkpoint's): no output of the model stands for them")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        if name not in folders:
            continue
        folder = os.path.join(root, name)
        files = sorted(e.name for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
        if not files:
            raise DatasetError(f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths += [os.path.join(folder, f) for f in files]
        labels += [label] * len(files)
    return paths, np.array(labels, np.int32), class_names


def _read_pets_list(path):
    """Annotation lines "Abyssinian_100 1 1 1" -> [(image name, class id)]; '#' lines are comments."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"Oxford-IIIT Pet annotation file not found: {path}")
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 2 or not fields[1].isdigit() or int(fields[1]) < 1:
                raise DatasetError(f"{path}:{number}: expected 'image_name class_id species breed_id', "
                                   f"got {line.strip()!r}")
            entries.append((fields[0], int(fields[1])))
    return entries


def _pets_annotations(data_dir, split):
    """-> (the split's annotation file, its entries, breed names numbered by class id)."""
    _require_dir(data_dir, "data_dir")
    annotations = os.path.join(data_dir, "annotations")
    lists = {name: os.path.join(annotations, f"{name}.txt") for name in ("trainval", "test")}
    chosen = _split_name(split, {"train": "trainval", "trainval": "trainval", "val": "test", "test": "test"},
                           data_dir)
    entries = _read_pets_list(lists[chosen])
    if not entries:
        raise DatasetError(f"{lists[chosen]} lists no images")
    other = [e for n, p in lists.items() if n != chosen and os.path.isfile(p) for e in _read_pets_list(p)]
    breeds = {}
    for name, class_id in entries + other:
        breed = name.rsplit("_", 1)[0]
        if breeds.setdefault(class_id, breed) != breed:
            raise DatasetError(f"class id {class_id} in {annotations} is listed for both '{breeds[class_id]}' "
                               f"and '{breed}' images")
    missing_ids = sorted(set(range(1, max(breeds) + 1)) - set(breeds))
    if missing_ids:
        raise DatasetError(f"class ids {missing_ids} never appear in {annotations}: ids must run 1..N")
    class_names = tuple(breeds[i].replace("_", " ").title() for i in range(1, max(breeds) + 1))
    return lists[chosen], entries, class_names


def pets_class_names(data_dir, split):
    """The breed names, from the annotation lists alone."""
    return _pets_annotations(data_dir, split)[2]


def load_pets(data_dir, split, class_names=None):
    """Oxford-IIIT Pet -> (image paths, labels int32, breed names).

    Breed names come from the image names of both annotation lists, so train and test agree on all 37 classes.
    """
    list_path, entries, own = _pets_annotations(data_dir, split)
    check_fixed_classes(own, class_names, f"Oxford-IIIT Pet in {data_dir}")
    image_dir = os.path.join(data_dir, "images")
    _require_dir(image_dir, "Oxford-IIIT Pet image folder")
    paths = [os.path.join(image_dir, name + ".jpg") for name, _ in entries]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetNotFoundError(f"{len(missing)} images listed in {list_path} are missing, e.g. {missing[0]}")
    return paths, np.array([class_id - 1 for _, class_id in entries], np.int32), own


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_FRAMES = (0xC0, 0xC1, 0xC2)  # baseline, extended and progressive Huffman: what MindSpore's decoder reads


def _complete_jpeg(data):
    """Header segments well formed up to the scan, a Huffman frame, an end marker near the end. MindSpore's
    decoder fails on a truncated file and can crash the process on a damaged header; damaged scan data only
    makes it warn, as Pillow does."""
    if data[:2] != b"\xff\xd8" or data.rfind(b"\xff\xd9", max(0, len(data) - 1024)) < 0:
        return False
    pos, frame = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return frame
        else:
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            if length < 2:
                return False
            frame |= marker in _JPEG_FRAMES
            pos += 2 + length
    return False


def _complete_png(data):
    """Every chunk's CRC right and the IEND chunk last (crc32 runs at GB/s: a negligible cost)."""
    if data[:8] != _PNG_SIGNATURE:
        return False
    view, pos = memoryview(data), 8
    while pos + 12 <= len(data):
        end = pos + 12 + int.from_bytes(view[pos:pos + 4], "big")
        if end > len(data) or zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(view[end - 4:end], "big"):
            return False
        if view[pos + 4:pos + 8] == b"IEND":
            return True
        pos = end
    return False


def decodable_bytes(path):
    """A file's bytes in a form MindSpore's C++ Decode reads (uint8 array), or DatasetError naming the file.

    Complete JPEG and PNG files pass as they are; any other file is decoded by Pillow (GIF, WebP, a JPEG with a
    long tail...) and handed on as BMP, or is an error when Pillow cannot decode it either.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise DatasetError(f"cannot read image {path}: {err}") from err
    if not (_complete_jpeg(data) or _complete_png(data)):
        try:
            with Image.open(io.BytesIO(data)) as image:
                rgb = image.convert("RGB")
        except Exception as err:  # Pillow reports corrupt files as OSError, SyntaxError, ValueError...
            raise DatasetError(f"cannot decode image {path}: {err}") from err
        buffer = io.BytesIO()
        rgb.save(buffer, "BMP")
        data = buffer.getvalue()
    return np.frombuffer(data, np.uint8)


class ImageFiles:
    """Random-access source for GeneratorDataset: yields each file's encoded bytes (`decodable_bytes`), which the
    pipeline decodes in C++, so that an unreadable file is either an error naming it (bad_images="error") or
    skipped (bad_images="skip": the next readable image of the list takes its place, keeping the epoch length that
    sharding and the step count rely on).
    """

    def __init__(self, paths, labels, bad_images="error"):
        if bad_images not in ("error", "skip"):
            raise DatasetError(f"bad_images must be 'error' or 'skip', got {bad_images!r}")
        self.paths, self.labels, self.bad_images = paths, labels, bad_images
        self.skipped = set()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        for offset in range(len(self.paths)):
            i = (index + offset) % len(self.paths)
            try:
                return decodable_bytes(self.paths[i]), self.labels[i]
            except DatasetError as err:
                if self.bad_images == "error":
                    raise DatasetError(f"{err} (set bad_images: skip to leave unreadable images out)") from err
                self._skip(self.paths[i], err.__cause__)
        raise DatasetError(f"none of the {len(self.paths)} images is readable, e.g. {self.paths[0]}")

    def _skip(self, path, err):
        with self._lock:
            if path in self.skipped:
                return
            self.skipped.add(path)
            count = len(self.skipped)
        _logger.warning("skipping unreadable image %s (%s); %d skipped so far", path, err, count)
