"""Weights of other GhostNet code -> this repo's models, one tensor to one parameter; nothing filled by guesswork.

Sources (`--format` of scripts/convert_checkpoint.py): `torch` (official / timm .pth, .pt, .safetensors: module
paths are shared, BN leaves renamed), `mindcv` (MindCV 0.3.0) and `zoo` (the MindSpore model zoo's ghostnet_1x,
ghostnet_nose_1x, ghostnet_600m), the last two renamed by layouts.py. The zoo's networks compute this repo's function:
their differences (uncut ghost outputs, SE and channel rounding) give the same shapes at the published widths, and
their hard sigmoid's float32(1 / 6) differs from / 6 in the last bit.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np

from src.atomic_files import replace_atomic
from src.checkpoint.files import CheckpointError, model_weights, read_checkpoint
from src.checkpoint.layouts import layout_of
from src.checkpoint.torch_file import load_state_dict
from src.models.registry import create_model, model_info

FORMATS = ("auto", "torch", "mindcv", "zoo")

_BN_LEAVES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_DROPPED_LEAVES = ("num_batches_tracked",)  # BN's step counter: MindSpore keeps no such state


def _listing(what: str, items: List[str], limit: int = 12) -> str:
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)} {what}: {', '.join(items[:limit])}{more}"


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def convert_state_dict(state: Dict[str, np.ndarray], net: ms.nn.Cell,
                       renames: Sequence[Tuple[str, str]] = (), exclude: Sequence[str] = ()) -> Dict[str, ms.Parameter]:
    """MindSpore parameter name -> Parameter holding the checkpoint's tensor, for every parameter of `net`.

    `state`: torch names, or this repo's (what `read_source` gives for MindSpore checkpoints).
    `renames`: (regex, replacement) pairs applied to each key first, for module paths that differ.
    `exclude`: module paths (e.g. the classifier when the class count changes) whose tensors are dropped and
    whose parameters may stay unfilled. Values are cast to the parameter's dtype.
    """
    params = {p.name: p for p in net.get_parameters()}
    converted, source, unused, mismatched = {}, {}, [], {}
    for key, value in state.items():
        if key.rpartition(".")[2] in _DROPPED_LEAVES:
            continue
        renamed = key
        for pattern, replacement in renames:
            renamed = re.sub(pattern, replacement, renamed)
        if _under(renamed, exclude):
            continue
        path, _, leaf = renamed.rpartition(".")
        name = renamed if renamed in params else f"{path}.{_BN_LEAVES.get(leaf, leaf)}"
        if name not in params:
            unused.append(key)
            continue
        if name in source:
            raise ValueError(f"checkpoint keys '{source[name]}' and '{key}' both map to parameter '{name}'")
        source[name] = key
        param = params[name]
        if tuple(value.shape) != tuple(param.shape):
            mismatched[name] = f"{key} {tuple(value.shape)} vs {name} {tuple(param.shape)}"
            continue
        converted[name] = ms.Parameter(ms.Tensor(value, dtype=param.dtype), name=name,
                                       requires_grad=param.requires_grad)
    missing = [n for n in params if n not in converted and n not in mismatched and not _under(n, exclude)]
    problems = [_listing(what, items) for what, items in (
        ("shape mismatches", list(mismatched.values())),
        ("MindSpore parameters without a checkpoint tensor", missing),
        ("checkpoint tensors without a MindSpore parameter", unused)) if items]
    if problems:
        raise ValueError(f"checkpoint does not match {type(net).__name__}: " + "; ".join(problems))
    return {n: converted[n] for n in params if n in converted}


def read_source(path, fmt: str = "auto", use_ema: bool = False) -> Tuple[Dict[str, np.ndarray], str, List[str]]:
    """-> (name -> array, format, notes) of a checkpoint to convert.

    `fmt` "auto" reads .ckpt files as MindSpore checkpoints (MindCV or zoo, told apart by their keys) and anything
    else as PyTorch. MindSpore checkpoints come back under this repo's names, with the EMA weights when the file
    has them (as validate.py takes them); `notes` says what was renamed or left out.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    if fmt == "torch" or (fmt == "auto" and path.suffix != ".ckpt"):
        return load_state_dict(path, use_ema), "torch", []
    tensors, _ = read_checkpoint(str(path))
    layout = layout_of(tensors)
    if layout is None:
        raise CheckpointError(f"{path} has neither MindCV's nor the MindSpore model zoo's GhostNet keys (first keys: "
                              f"{', '.join(list(tensors)[:4])}); this repo's own checkpoints load as they are")
    if fmt not in ("auto", layout):
        raise CheckpointError(f"{path} is not in the {fmt} layout but in the {layout} one (format auto tells them "
                              f"apart)")
    notes = []
    weights, kind = model_weights(tensors, str(path), report=notes.append)
    if use_ema and kind != "ema":
        raise CheckpointError(f"{path} holds no EMA weights (keys ema.*); drop use_ema")
    if kind == "ema":
        notes.append(f"checkpoint {path} holds EMA weights (ema.*): took them")
    return {key: value.asnumpy() for key, value in weights.items()}, layout, notes


@dataclass
class ConversionReport:
    """What `convert_checkpoint` did, for the caller to print."""

    format: str  # "torch", "mindcv" or "zoo"
    source_tensors: int  # weight tensors read from the source (after unwrapping / renaming)
    converted: int  # parameters filled from them
    saved: int  # parameters in the written checkpoint
    num_classes: int
    fresh: List[str]  # parameters left at their initialisation (new classifier)
    notes: List[str]  # what reading the source renamed or left out


def convert_checkpoint(model: str, src_path, dst_path, num_classes: Optional[int] = None,
                       use_ema: bool = False, fmt: str = "auto") -> ConversionReport:
    """Convert a PyTorch, MindCV or model-zoo checkpoint to a MindSpore .ckpt for `model`, written atomically and
    re-read.

    `num_classes` defaults to the checkpoint's classifier size. A different value builds a new, freshly
    initialised classifier (fine-tuning), which is reported in `fresh`.
    """
    dst_path = Path(dst_path)
    if dst_path.suffix != ".ckpt":
        raise ValueError(f"output must end with .ckpt (mindspore.load_checkpoint requires it), got {dst_path}")
    state, fmt, notes = read_source(src_path, fmt, use_ema)
    head = model_info(model).classifier
    head_weight = state.get(f"{head}.weight")
    ckpt_classes = head_weight.shape[0] if head_weight is not None else None
    if num_classes is None:
        num_classes = ckpt_classes or model_info(model).num_classes
    exclude = (head,) if ckpt_classes not in (None, num_classes) else ()

    net = create_model(model, num_classes=num_classes)
    params = convert_state_dict(state, net, exclude=exclude)
    fresh = [p.name for p in net.get_parameters() if p.name not in params]
    records = [{"name": p.name, "data": params.get(p.name, p)} for p in net.get_parameters()]

    replace_atomic(str(dst_path), lambda tmp: ms.save_checkpoint(records, tmp, crc_check=True),  # CRCs: read back
                   suffix=".ckpt")

    saved = ms.load_checkpoint(str(dst_path))
    expected = {p.name for p in net.get_parameters()}
    if set(saved) != expected:
        raise RuntimeError(_listing(f"names differ between {dst_path} and the network",
                                    sorted(set(saved) ^ expected)))
    differ = [n for n, p in params.items() if not np.array_equal(saved[n].asnumpy(), p.asnumpy())]
    if differ:
        raise RuntimeError(_listing(f"parameters of {dst_path} differ from the converted values", differ))
    return ConversionReport(format=fmt, source_tensors=len(state), converted=len(params), saved=len(saved),
                            num_classes=num_classes, fresh=fresh, notes=notes)
