"""Image and label transforms built from the config's data keys.

Per-sample training ops are MindSpore C++ ops (image files are decoded by them too, only the crop's region when
training) and stay uint8 HWC until HWC2CHW. Random erasing and normalisation (numpy: Python-only or slower in
MindSpore) and the label ops run once per batch, which keeps the pipeline several times faster than training on
28-32 px data. The evaluation resize is Pillow's, as timm / torchvision evaluate: MindSpore's has no antialiasing.
"""
import math
import re

import mindspore as ms
import mindspore.dataset.transforms as T
import mindspore.dataset.vision as V
import numpy as np
from PIL import Image

from src.data.readers import DatasetError

INTERPOLATIONS = {"nearest": V.Inter.NEAREST, "bilinear": V.Inter.BILINEAR, "bicubic": V.Inter.BICUBIC,
                  "area": V.Inter.AREA}
DEFAULT_CROP_PCT = 0.875
_MAGNITUDE_MAX = 10  # timm's RandAugment scale: m10 is the strongest


_PIL_FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "area": Image.BOX}


def interpolation(name):
    if name not in INTERPOLATIONS:
        raise DatasetError(f"interpolation '{name}' is not one of {sorted(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def parse_rand_augment(spec):
    """timm-style "rand-m9-n2-mstd0.5" -> (num_ops, magnitude, magnitude_std); n defaults to 2, mstd to 0."""
    kind, *parts = spec.split("-")
    matches = [re.fullmatch(r"(mstd|m|n)(\d+(?:\.\d+)?)", part) for part in parts]
    if kind != "rand" or not all(matches):
        raise DatasetError(f"auto_augment '{spec}' is not a RandAugment string "
                           "'rand-m<int>[-n<int>][-mstd<float>]'")
    values = {"m": 9.0, "n": 2.0, "mstd": 0.0, **{m[1]: float(m[2]) for m in matches}}
    num_ops, magnitude = values["n"], values["m"]
    if not (num_ops.is_integer() and num_ops >= 1 and magnitude.is_integer() and 1 <= magnitude <= _MAGNITUDE_MAX):
        raise DatasetError(f"auto_augment '{spec}': m must be an integer 1..{_MAGNITUDE_MAX}, n a positive integer")
    return int(num_ops), int(magnitude), values["mstd"]


def rand_augment(spec, fill):
    """RandAugment at timm's 0..10 magnitude scale. A magnitude std draws the magnitude per image from a
    normal distribution rounded to 1..10, as weighted copies in a RandomChoice (20 slots)."""
    num_ops, magnitude, std = parse_rand_augment(spec)

    def op(m):
        return V.RandAugment(num_ops, m, _MAGNITUDE_MAX + 1, V.Inter.BILINEAR, fill)

    if std <= 0:
        return op(magnitude)

    def cdf(x):
        return 0.5 * (1.0 + math.erf((x - magnitude) / (std * math.sqrt(2.0))))

    edges = [-math.inf] + [k + 0.5 for k in range(1, _MAGNITUDE_MAX)] + [math.inf]
    choices = []
    for m in range(1, _MAGNITUDE_MAX + 1):
        choices += [op(m)] * round(20 * (cdf(edges[m]) - cdf(edges[m - 1])))
    return T.RandomChoice(choices)


def train_transforms(cfg, in_channels, native_size, mean, encoded=False):
    """Per-sample training ops: crop, flip, colour, RandAugment, HWC->CHW (uint8 throughout); random erasing is
    the batch op `random_erasing`.

    `native_size` is the side of square in-memory data (None for image files): no resize when it already
    matches. `encoded`: the images are file bytes, decoded here (a random resized crop decodes only its region).
    Pad-and-crop pads with black (the CIFAR recipe); RandAugment fills with the mean colour.
    """
    size, inter = cfg.image_size, interpolation(cfg.interpolation)
    fill = tuple(round(255 * m) for m in mean)
    if cfg.random_crop_padding > 0:
        ops = [V.Decode()] if encoded else []
        ops += [] if native_size == size else [V.Resize(size, inter)]
        ops.append(V.RandomCrop(size, padding=cfg.random_crop_padding))
    elif encoded:
        ops = [V.RandomCropDecodeResize(size, tuple(cfg.scale), tuple(cfg.ratio), inter)]
    else:
        ops = [V.RandomResizedCrop(size, tuple(cfg.scale), tuple(cfg.ratio), inter)]
    if cfg.hflip > 0:
        ops.append(V.RandomHorizontalFlip(cfg.hflip))
    colour = []
    if cfg.color_jitter > 0:
        jitter = (max(0.0, 1.0 - cfg.color_jitter), 1.0 + cfg.color_jitter)
        colour.append(V.RandomColorAdjust(brightness=jitter, contrast=jitter, saturation=jitter))
    if cfg.auto_augment:
        colour.append(rand_augment(cfg.auto_augment, fill * 3 if in_channels == 1 else fill))
    if colour and in_channels == 1:  # these ops need RGB; a grey image stays grey in every channel
        colour = [V.ConvertColor(V.ConvertMode.COLOR_GRAY2RGB), *colour, T.Slice(True, True, [0])]
    return ops + colour + [V.HWC2CHW()]


class BatchErasing:
    """Random erasing of each image of a uint8 NCHW batch with probability `prob`, filled with `fill` (one value
    per channel), drawn as MindSpore's / torchvision's RandomErasing draws it (area `scale`, aspect `ratio`, up to
    10 tries). One Python call per batch: per image, MindSpore's Python op held the GIL for every sample."""

    def __init__(self, prob, fill, seed, scale=(0.02, 0.33), ratio=(0.3, 3.3), attempts=10):
        self.prob, self.scale, self.attempts = prob, scale, attempts
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.fill = np.array(fill, np.uint8).reshape(-1, 1, 1)
        self.rng = np.random.default_rng(seed)  # an int or a sequence of ints

    def __call__(self, images):
        images = images if images.flags.writeable else images.copy()
        count, _, height, width = images.shape
        for k in np.flatnonzero(self.rng.random(count) < self.prob):
            for _ in range(self.attempts):
                area = height * width * self.rng.uniform(*self.scale)
                aspect = math.exp(self.rng.uniform(*self.log_ratio))
                h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
                if h < height and w < width:
                    top, left = self.rng.integers(height - h + 1), self.rng.integers(width - w + 1)
                    images[k, :, top:top + h, left:left + w] = self.fill
                    break
        return images


def random_erasing(cfg, mean, shard_id=0):
    """The training batch op of cfg.re_prob, filling with the mean colour (which normalises to 0); None if off.
    Each shard draws its own erasures (seeded with the seed and the shard)."""
    if cfg.re_prob <= 0:
        return None
    return BatchErasing(cfg.re_prob, [round(255 * m) for m in mean], (cfg.seed, shard_id))


class ResizeCenterCrop:
    """Short side to `resize` pixels, then the centre `size` x `size`, as timm / torchvision evaluate: Pillow's
    resize (antialiased when shrinking), their long-side rounding and crop offsets. uint8 HWC in and out."""

    def __init__(self, resize, size, interpolation_name):
        self.resize, self.size, self.filter = resize, size, _PIL_FILTERS[interpolation_name]

    def __call__(self, image):
        height, width = image.shape[:2]
        if height <= width:
            height, width = self.resize, int(self.resize * width / height)
        else:
            height, width = int(self.resize * height / width), self.resize
        pixels = image[..., 0] if image.shape[-1] == 1 else image  # Pillow reads grey images as 2-d
        resized = np.asarray(Image.fromarray(pixels).resize((width, height), self.filter))
        resized = resized.reshape(height, width, -1)
        top, left = int(round((height - self.size) / 2.0)), int(round((width - self.size) / 2.0))
        return resized[top:top + self.size, left:left + self.size]


def eval_transforms(cfg, native_size, imagenet_like, encoded=False):
    """Per-sample evaluation ops. ImageNet-like data: short side to image_size / crop_pct, centre crop.
    Small data (crop_pct None): the whole image, resized to image_size only if its native size differs.
    `encoded`: the images are file bytes, decoded first."""
    size, inter = cfg.image_size, interpolation(cfg.interpolation)
    crop_pct = cfg.crop_pct
    if crop_pct is None and imagenet_like:
        crop_pct = DEFAULT_CROP_PCT
    ops = [V.Decode()] if encoded else []
    if crop_pct is None:
        ops += [] if native_size == size else [V.Resize(size, inter)]
    elif 0 < crop_pct <= 1:
        ops.append(ResizeCenterCrop(math.floor(size / crop_pct), size, cfg.interpolation))
    else:
        raise DatasetError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return ops + [V.HWC2CHW()]


class Normalize:
    """uint8 CHW / NCHW images -> float32 (x - mean) / std, statistics in [0, 1] units. numpy, which releases the
    GIL in its loops: on a training batch it takes a quarter of the CPU time of MindSpore's Normalize. Divided,
    not multiplied by 1 / std, so the result is bit for bit MindSpore's (runs before this pipeline change stay
    reproducible)."""

    def __init__(self, mean, std):
        self.mean = np.array([255 * m for m in mean], np.float32).reshape(-1, 1, 1)
        self.std = np.array([255 * s for s in std], np.float32).reshape(-1, 1, 1)

    def __call__(self, images):
        out = np.subtract(images, self.mean, dtype=np.float32)
        out /= self.std
        return out


def normalize(mean, std):
    """Batch-level normalisation (also of single CHW images) with statistics given in [0, 1] units."""
    return Normalize(mean, std)


def one_hot(num_classes):
    """Batched int labels -> float32 one-hot soft targets (mixup and the loss work on these)."""
    return [T.OneHot(num_classes), T.TypeCast(ms.float32)]


def mix_transform(cfg):
    """Mixup and/or CutMix on (NCHW images, soft labels) batches; with both on, each batch picks one at random.
    Applied to a batch with probability mixup_prob. None when both alphas are 0."""
    ops = []
    if cfg.mixup > 0:
        ops.append(V.MixUpBatch(cfg.mixup))
    if cfg.cutmix > 0:
        ops.append(V.CutMixBatch(V.ImageBatchFormat.NCHW, cfg.cutmix))
    if not ops:
        return None
    op = ops[0] if len(ops) == 1 else T.RandomChoice(ops)
    return op if cfg.mixup_prob >= 1 else T.RandomApply([op], prob=cfg.mixup_prob)
