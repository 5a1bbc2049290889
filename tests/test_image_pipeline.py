"""Image-file pipeline: MindSpore decodes the files' bytes; formats it cannot read, damaged files, the evaluation
resize against a plain Pillow reference, and a smoke run of scripts/benchmarks/data_pipeline.py."""
import io
import json
import logging
import math
import os
import subprocess
import sys

import mindspore.dataset.vision as V
import numpy as np
import pytest
from PIL import Image

from src.config import Config
from src.data import DatasetError, create_dataset
from src.data.readers import decodable_bytes
from tests.data_fixtures import class_level

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (file name, Pillow mode, save options): JPEG and PNG go to MindSpore as they are, the others through Pillow
FORMATS = [("rgb.jpg", "RGB", {}), ("grey.jpg", "L", {}), ("progressive.jpg", "RGB", {"progressive": True}),
           ("cmyk.jpg", "CMYK", {}), ("rgb.png", "RGB", {}), ("grey.png", "L", {}), ("rgba.png", "RGBA", {}),
           ("palette.png", "P", {}), ("rgb.bmp", "RGB", {}), ("rgb.gif", "P", {}), ("rgb.webp", "RGB", {}),
           ("rgb.tiff", "RGB", {})]


def _cfg(data_dir, **overrides):
    values = dict(dataset="folder", data_dir=str(data_dir), image_size=32, batch_size=4, num_workers=2, seed=0)
    return Config(**{**values, **overrides})


def _batches(dataset):
    return list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


def _save(path, pixels, mode, **options):
    Image.fromarray(pixels).convert(mode).save(path, **options)


def _smooth(rng, height, width):
    """A smooth colour image (photo-like: resizing it is not dominated by aliasing of noise)."""
    y, x = np.mgrid[0:height, 0:width]
    phases = rng.uniform(0, 6, 3)
    image = [128 + 100 * np.sin(x / (5 + 3 * c) + y / (7 + 2 * c) + phases[c]) for c in range(3)]
    return np.clip(np.stack(image, -1) + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)


def test_every_format_keeps_its_label(tmp_path):
    """Two classes of flat images in every format and mode: the batch contract and each image's level."""
    rng = np.random.default_rng(0)
    for k in range(2):
        folder = tmp_path / "val" / f"class_{k}"
        folder.mkdir(parents=True)
        for j, (name, mode, options) in enumerate(FORMATS):
            size = (40, 56) if j % 2 else (56, 40)
            level = class_level(k, 2) + rng.integers(-4, 5, size + (3,))
            _save(folder / name, level.astype(np.uint8), mode, **options)
    dataset, info = create_dataset(_cfg(tmp_path, eval_batch_size=8), "val", False)
    batches = _batches(dataset)
    assert info.num_samples == 2 * len(FORMATS) and [b[0].shape[1:] for b in batches] == [(3, 32, 32)] * 3
    labels = np.concatenate([label for _, label in batches])
    np.testing.assert_array_equal(labels, [0] * len(FORMATS) + [1] * len(FORMATS))
    pixels = np.concatenate([images for images, _ in batches]) * 255 * np.array(info.std).reshape(1, 3, 1, 1)
    means = (pixels + 255 * np.array(info.mean).reshape(1, 3, 1, 1)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, class_level(labels, 2), atol=6)  # CMYK / palette round-trips drift a little
    train, _ = create_dataset(_cfg(tmp_path, auto_augment="rand-m9-mstd0.5", re_prob=0.5),
                              "val", True)
    images, soft = _batches(train)[0]
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32 and soft.shape == (4, 2)


def _damaged():
    """{name: bytes} of files no decoder should accept, or that crashed MindSpore's (a damaged JPEG header)."""
    rng = np.random.default_rng(1)
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(_smooth(rng, 48, 64)).save(jpeg, "JPEG", quality=90)
    Image.fromarray(_smooth(rng, 48, 64)).save(png, "PNG")
    jpeg, png = jpeg.getvalue(), png.getvalue()
    flipped = bytearray(png)
    flipped[60] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    return {"truncated.jpg": jpeg[:len(jpeg) // 2], "header.jpg": jpeg[:20] + bytes(200) + jpeg[220:],
            "crc.png": bytes(flipped), "truncated.png": png[:len(png) // 2], "text.jpg": b"not an image at all"}


@pytest.mark.parametrize("name", ["truncated.jpg", "header.jpg", "crc.png", "truncated.png", "text.jpg"])
def test_damaged_file_is_an_error_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(_damaged()[name])
    try:
        data = decodable_bytes(str(path))
    except DatasetError as err:
        assert f"cannot decode image {path}" in str(err)
    else:  # Pillow read it (a damaged header can still decode): then MindSpore must read what it was handed
        assert name == "header.jpg" and V.Decode()(data).shape == (48, 64, 3)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_damaged_files_in_the_pipeline(tmp_path, caplog, policy):
    rng = np.random.default_rng(2)
    damaged = {n: d for n, d in _damaged().items() if n != "header.jpg"}
    for k in range(2):
        folder = tmp_path / "train" / f"class_{k}"
        folder.mkdir(parents=True)
        for j in range(4):
            Image.fromarray(_smooth(rng, 40, 40)).save(folder / f"good_{j}.jpg")
    for name, data in damaged.items():
        (tmp_path / "train" / "class_1" / name).write_bytes(data)
    dataset, _ = create_dataset(_cfg(tmp_path, bad_images=policy), "train", True)
    if policy == "error":
        with pytest.raises(RuntimeError, match=r"(?s)cannot decode image .*(truncated|crc|text).*set bad_images"):
            _batches(dataset)
        return
    with caplog.at_level(logging.WARNING):
        assert sum(len(images) for images, _ in _batches(dataset)) == 12  # the epoch keeps its length
    for name in damaged:
        assert name in caplog.text


def test_eval_tensors_match_a_pillow_reference(tmp_path):
    """timm's evaluation in plain Pillow + numpy: short side to floor(size / crop_pct) by an antialiased
    bilinear resize, the long side truncated, the centre crop at rounded offsets, then normalised."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "val" / "class_0"
    folder.mkdir(parents=True)
    for j, (height, width) in enumerate([(90, 120), (120, 90), (75, 125), (99, 131)]):
        Image.fromarray(_smooth(rng, height, width)).save(folder / f"{j}.jpg", quality=90)
    cfg = _cfg(tmp_path, image_size=48, crop_pct=0.875, eval_batch_size=4)
    (images, _), = _batches(create_dataset(cfg, "val", False)[0])
    resize, mean, std = math.floor(48 / 0.875), np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for image, path in zip(images, sorted(folder.iterdir())):
        with Image.open(path) as pil:
            width, height = pil.size
            scale = resize / min(width, height)
            size = (resize, int(height * scale)) if width <= height else (int(width * scale), resize)
            pixels = np.asarray(pil.convert("RGB").resize(size, Image.BILINEAR), np.float64)
        top, left = round((pixels.shape[0] - 48) / 2), round((pixels.shape[1] - 48) / 2)
        expected = ((pixels[top:top + 48, left:left + 48] / 255 - mean) / std).transpose(2, 0, 1)
        assert np.abs(image - expected).mean() <= 0.005


def test_benchmark_smoke(tmp_path):
    """Tiny settings, without the PyTorch reference: ours (and MindCV's loader when installed) and the table."""
    out = tmp_path / "data.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "benchmarks", "data_pipeline.py"), "--images", "8",
                           "--eval_images", "2", "--rounds", "1", "--batch_size", "4", "--json", str(out)],
                          capture_output=True, text=True, env=dict(os.environ, TORCH_PYTHON=str(tmp_path / "none")),
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| ours |" in done.stdout and "eval tensors vs timm: not measured" in done.stdout
    result = json.loads(out.read_text())
    assert result["loaders"]["ours"]["median"] > 0 and "timm" not in result["loaders"]


def test_epoch_startup_benchmark_smoke(tmp_path):
    """--scan_files on a small tree: an epoch's start-up before (reading the split) and now, with its record."""
    out = tmp_path / "scan.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "benchmarks", "data_pipeline.py"), "--scan_files", "40",
                           "--scan_classes", "4", "--rounds", "1", "--batch_size", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| before: read the split (list every folder) + build the pipeline |" in done.stdout
    result = json.loads(out.read_text())["scan"]
    assert (result["files"], result["classes"]) == (40, 4) and result["before"]["median_s"] > 0
