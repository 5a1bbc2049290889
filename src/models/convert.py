"""PyTorch (official / timm) weights -> this repo's MindSpore models, one tensor to one parameter.

Child cells carry the torch module names (docs/CONTRACTS.md), so a torch key and its MindSpore parameter share
the module path and differ at most in the leaf: BatchNorm's weight / bias / running_mean / running_var are
gamma / beta / moving_mean / moving_variance, and its num_batches_tracked has no counterpart. Which leaf a key
takes is decided by the parameters the network really has, so the same rules serve every family that follows
the naming contract; a family whose module paths differ passes `renames`. Nothing is filled by guesswork:
every parameter must receive a tensor of its shape and every tensor must be used, or the error names the keys.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np

from src.models.registry import create_model, model_info
from src.utils.torch_checkpoint import load_state_dict

_BN_LEAVES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_DROPPED_LEAVES = ("num_batches_tracked",)  # BN's step counter: MindSpore keeps no such state


def _listing(what: str, items: List[str], limit: int = 12) -> str:
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)} {what}: {', '.join(items[:limit])}{more}"


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def convert_state_dict(torch_state: Dict[str, np.ndarray], net: ms.nn.Cell,
                       renames: Sequence[Tuple[str, str]] = (), exclude: Sequence[str] = ()) -> Dict[str, ms.Parameter]:
    """MindSpore parameter name -> Parameter holding the torch tensor, for every parameter of `net`.

    `renames`: (regex, replacement) pairs applied to each torch key first, for module paths that differ.
    `exclude`: module paths (e.g. the classifier when the class count changes) whose tensors are dropped and
    whose parameters may stay unfilled. Values are cast to the parameter's dtype.
    """
    params = {p.name: p for p in net.get_parameters()}
    converted, source, unused, mismatched = {}, {}, [], {}
    for key, value in torch_state.items():
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
            raise ValueError(f"torch keys '{source[name]}' and '{key}' both map to parameter '{name}'")
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
        ("MindSpore parameters without a torch tensor", missing),
        ("torch tensors without a MindSpore parameter", unused)) if items]
    if problems:
        raise ValueError(f"checkpoint does not match {type(net).__name__}: " + "; ".join(problems))
    return {n: converted[n] for n in params if n in converted}


@dataclass
class ConversionReport:
    """What `convert_checkpoint` did, for the caller to print."""

    torch_tensors: int  # tensors in the (unwrapped) torch state_dict
    converted: int  # parameters filled from them
    saved: int  # parameters in the written checkpoint
    num_classes: int
    fresh: List[str]  # parameters left at their initialisation (new classifier)


def convert_checkpoint(model: str, src_path, dst_path, num_classes: Optional[int] = None,
                       use_ema: bool = False) -> ConversionReport:
    """Convert a torch / safetensors file to a MindSpore .ckpt for `model`, written atomically and re-read.

    `num_classes` defaults to the checkpoint's classifier size. A different value builds a new, freshly
    initialised classifier (fine-tuning), which is reported in `fresh`.
    """
    dst_path = Path(dst_path)
    if dst_path.suffix != ".ckpt":
        raise ValueError(f"output must end with .ckpt (mindspore.load_checkpoint requires it), got {dst_path}")
    state = load_state_dict(src_path, use_ema)
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

    tmp = dst_path.with_name(f".{dst_path.stem}.{os.getpid()}.tmp.ckpt")
    try:
        ms.save_checkpoint(records, str(tmp), crc_check=True)  # read_checkpoint checks the CRCs
        os.replace(tmp, dst_path)
    finally:
        tmp.unlink(missing_ok=True)

    saved = ms.load_checkpoint(str(dst_path))
    expected = {p.name for p in net.get_parameters()}
    if set(saved) != expected:
        raise RuntimeError(_listing(f"names differ between {dst_path} and the network",
                                    sorted(set(saved) ^ expected)))
    differ = [n for n, p in params.items() if not np.array_equal(saved[n].asnumpy(), p.asnumpy())]
    if differ:
        raise RuntimeError(_listing(f"parameters of {dst_path} differ from the converted values", differ))
    return ConversionReport(torch_tensors=len(state), converted=len(params), saved=len(saved),
                            num_classes=num_classes, fresh=fresh)
