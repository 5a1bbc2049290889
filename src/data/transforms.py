"""Image and label transforms built from the config's data keys.

Everything is a MindSpore C++ op except random erasing (MindSpore only has it in Python). Per-sample ops stay
uint8 HWC until HWC2CHW; normalisation and the label ops run once per batch, which keeps the pipeline several
times faster than training on 28-32 px data.
"""
import math
import re

import mindspore as ms
import mindspore.dataset.transforms as T
import mindspore.dataset.vision as V

from src.data.readers import DatasetError

INTERPOLATIONS = {"nearest": V.Inter.NEAREST, "bilinear": V.Inter.BILINEAR, "bicubic": V.Inter.BICUBIC,
                  "area": V.Inter.AREA}
DEFAULT_CROP_PCT = 0.875
_MAGNITUDE_MAX = 10  # timm's RandAugment scale: m10 is the strongest


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


def train_transforms(cfg, in_channels, native_size, mean):
    """Per-sample training ops: crop, flip, colour, RandAugment, HWC->CHW, random erasing (uint8 throughout).

    `native_size` is the side of square in-memory data (None for image files): no resize when it already
    matches. Pad-and-crop pads with black (the CIFAR recipe); RandAugment and random erasing fill with the mean
    colour, which normalises to 0.
    """
    size, inter = cfg.image_size, interpolation(cfg.interpolation)
    fill = tuple(round(255 * m) for m in mean)
    if cfg.random_crop_padding > 0:
        ops = [] if native_size == size else [V.Resize(size, inter)]
        ops.append(V.RandomCrop(size, padding=cfg.random_crop_padding))
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
    ops += colour + [V.HWC2CHW()]
    if cfg.re_prob > 0:
        ops.append(V.RandomErasing(prob=cfg.re_prob, value=fill[0] if in_channels == 1 else fill))
    return ops


def eval_transforms(cfg, native_size, imagenet_like):
    """Per-sample evaluation ops. ImageNet-like data: short side to image_size / crop_pct, centre crop.
    Small data (crop_pct None): the whole image, resized to image_size only if its native size differs."""
    size, inter = cfg.image_size, interpolation(cfg.interpolation)
    crop_pct = cfg.crop_pct
    if crop_pct is None and imagenet_like:
        crop_pct = DEFAULT_CROP_PCT
    if crop_pct is None:
        ops = [] if native_size == size else [V.Resize(size, inter)]
    elif 0 < crop_pct <= 1:
        ops = [V.Resize(math.floor(size / crop_pct), inter), V.CenterCrop(size)]
    else:
        raise DatasetError(f"crop_pct must be in (0, 1], got {crop_pct}")
    return ops + [V.HWC2CHW()]


def normalize(mean, std):
    """Batch-level normalisation of NCHW uint8 images with statistics given in [0, 1] units."""
    return V.Normalize([255 * m for m in mean], [255 * s for s in std], is_hwc=False)


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
