"""This repo's checkpoint files: the one writer (atomic, CRC per entry, entry count first) and reader, and loading
model weights from any checkpoint, strictly or for fine-tuning.

Keys: `<name>` model weights, `ema.<name>` EMA weights, `state.<...>` the rest of a training run (read only by
`--resume`), `state.meta.<key>` scalars and strings. MindCV's and the model zoo's layouts load as they are
(layouts.py). Files are read with mindspore.load_checkpoint (protobuf), never unpickled.
"""
import json
import os
from collections import Counter

import mindspore as ms
import numpy as np

from src.atomic_files import replace_atomic
from src.checkpoint.layouts import to_repo_names

EMA_PREFIX = "ema."
STATE_PREFIX = "state."
META_PREFIX = STATE_PREFIX + "meta."
_ENTRIES = "entries"  # meta key of the entry count, written first
CLASS_NAMES = "class_names"  # meta key: JSON list of the class names, in the order of the model's outputs


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit; the message names the file and the keys."""


def _key_list(keys, limit=8):
    shown = ", ".join(keys[:limit])
    return shown + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def save_checkpoint(path: str, tensors: dict, meta: dict = None):
    """Write {name: Tensor/Parameter} plus scalar metadata; readers never see a half-written file."""
    append = {META_PREFIX + key: value for key, value in (meta or {}).items()}
    count = ms.Tensor(np.array(1 + len(tensors) + len(append), np.int64))
    items = [{"name": META_PREFIX + _ENTRIES, "data": count}]
    items += [{"name": key, "data": value} for key, value in tensors.items()]
    replace_atomic(path, lambda tmp: ms.save_checkpoint(items, tmp, append_dict=append or None, crc_check=True),
                   suffix=".ckpt")  # MindSpore insists on the .ckpt suffix


def read_checkpoint(path: str):
    """-> (tensors {name: Parameter}, meta {key: python value}); a missing or corrupt file names the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        loaded = ms.load_checkpoint(path, crc_check=True)
    except (ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"cannot read checkpoint file {path} (truncated or corrupt?): {err}") from err
    tensors, meta = {}, {}
    for key, value in loaded.items():
        if key.startswith(META_PREFIX):
            meta[key[len(META_PREFIX):]] = value if isinstance(value, str) else value.asnumpy().item()
        else:
            tensors[key] = value
    written = meta.pop(_ENTRIES, None)  # absent in files written by other tools
    if written is not None and written != len(loaded):
        raise CheckpointError(f"checkpoint file {path} is truncated: it holds {len(loaded)} of the {written} "
                              f"entries written")
    return tensors, meta


def model_weights(tensors: dict, path: str = "checkpoint", report=None):
    """-> (weights, kind): the EMA weights when the checkpoint has them ("ema"), else the trained ones, under this
    repo's names (a foreign layout renamed, optimizer state left out); `report(line)` is told what was done."""
    ema = {k[len(EMA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EMA_PREFIX)}
    weights, kind = (ema, "ema") if ema else ({k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)},
                                              "trained")
    try:
        weights, notes = to_repo_names(weights, path)
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    if report:
        for note in notes:
            report(f"checkpoint {path} {note}")
    return weights, kind


def assign_values(targets: dict, values: dict):
    for key, param in targets.items():
        param.set_data(ms.Tensor(values[key].asnumpy(), dtype=param.dtype))


def find_mismatch(targets: dict, values: dict):
    """Missing, unexpected and wrong-shape keys, in the order of the network (then of the checkpoint)."""
    missing = [k for k in targets if k not in values]
    unexpected = [k for k in values if k not in targets]
    shapes = [f"{k} {tuple(values[k].shape)} vs {tuple(p.shape)}" for k, p in targets.items()
              if k in values and tuple(values[k].shape) != tuple(p.shape)]
    return missing, unexpected, shapes


def mismatch_message(path, what, missing, unexpected, shapes, meta):
    written_for = f" (it was written for model {meta['model']})" if "model" in meta else ""
    lines = [f"checkpoint {path}{written_for} does not fit {what}:"]
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): {_key_list(missing)}")
    if unexpected:
        lines.append(f"  not in {what} ({len(unexpected)}): {_key_list(unexpected)}")
    if shapes:
        lines.append(f"  wrong shape, checkpoint vs {what} ({len(shapes)}): {_key_list(shapes)}")
    return "\n".join(lines)


def load_weights(network, path: str) -> str:
    """Load a checkpoint's model weights into `network`, every key and shape matching; returns their kind."""
    tensors, meta = read_checkpoint(path)
    weights, kind = model_weights(tensors, path, report=print)
    targets = {p.name: p for p in network.get_parameters()}
    missing, unexpected, shapes = find_mismatch(targets, weights)
    if missing or unexpected or shapes:
        raise CheckpointError(mismatch_message(path, "the model", missing, unexpected, shapes, meta))
    assign_values(targets, weights)
    return kind


def load_pretrained(network, path: str, classifier: str) -> list:
    """Fine-tuning start: load every weight except a classifier that does not fit, which keeps its fresh init.

    Returns the classifier keys left out (the caller prints them); any other mismatch is an error naming keys.
    """
    tensors, meta = read_checkpoint(path)
    weights, _ = model_weights(tensors, path, report=print)
    targets = {p.name: p for p in network.get_parameters()}
    head = classifier + "."
    body_targets = {k: p for k, p in targets.items() if not k.startswith(head)}
    body_weights = {k: v for k, v in weights.items() if not k.startswith(head)}
    missing, unexpected, shapes = find_mismatch(body_targets, body_weights)
    if missing or unexpected or shapes:
        raise CheckpointError(mismatch_message(path, "the model", missing, unexpected, shapes, meta))
    head_fits = {k: p for k, p in targets.items()
                 if k.startswith(head) and k in weights and tuple(weights[k].shape) == tuple(p.shape)}
    assign_values({**body_targets, **head_fits}, weights)
    return [k for k in dict.fromkeys([*targets, *weights]) if k.startswith(head) and k not in head_fits]


def checkpoint_class_names(path: str):
    """The class names training stored in the checkpoint (meta `class_names`, a JSON list of strings) as a tuple in
    the order of the model's outputs, so evaluation numbers its labels as training did; None when the file has
    none (older runs, converted weights). A list that is not JSON, not strings or repeats a name is an error."""
    _, meta = read_checkpoint(path)
    if CLASS_NAMES not in meta:
        return None
    try:
        names = json.loads(meta[CLASS_NAMES])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: metadata '{CLASS_NAMES}' is not a JSON list ({err})") from err
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"checkpoint {path}: metadata '{CLASS_NAMES}' must be a non-empty JSON list of "
                              f"strings, got {meta[CLASS_NAMES][:200]!r}")
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise CheckpointError(f"checkpoint {path}: metadata '{CLASS_NAMES}' names {', '.join(repeated)} twice")
    return tuple(names)
