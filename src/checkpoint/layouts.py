"""GhostNet checkpoints of other MindSpore code, recognised by their keys and renamed to this repo's names.

Every weight loader and the converter go through `to_repo_names`, so a file loads the same way everywhere; after
renaming, every key and shape must fit the network or the loader's error names the keys.
- MindCV 0.3.0 (ghostnet_050 / 100 / 130): as here except the final conv-BN-ReLU, `blocks.9.features.0.*` / `.1.*`
  -> `blocks.9.0.conv.*` / `blocks.9.0.bn1.*`.
- The model zoo (`research/cv/ghostnet`: ghostnet_1x, ghostnet_nose_1x, ghostnet_600m) keeps its bottlenecks in one
  flat `blocks.0` ... `blocks.N` and every conv-BN pair as a `ConvUnit` (`conv`, `bn`); here they are grouped by
  stage (`blocks.<stage>.<block>`) and the pairs are SequentialCell indices or named cells.
- A trainer's optimizer and loss-scale state (`<slot>.<weight name>`, `global_step`, ...) is left out and said so.
"""
import re
from collections import Counter
from typing import Dict, List, Optional, Tuple

_MINDCV_KEY = re.compile(r"^blocks\.(\d+)\.features\.([01])\.(.+)$")
_MINDCV_RENAMES = {"0": "conv", "1": "bn1"}

# Number of `blocks.<n>` entries (bottlenecks + the final conv-BN) of a zoo network -> the zoo file that builds it
# and how many of its bottlenecks each stage holds here.
_ZOO_VARIANTS = {
    17: ("src/ghostnet.py", (1, 1, 1, 1, 1, 1, 5, 1, 4)),  # ghostnet_1x, ghostnet_nose_1x
    20: ("src/ghostnet600.py", (1, 1, 1, 1, 2, 1, 6, 1, 5)),  # ghostnet_600m
}
_ZOO_MARKER = re.compile(r"(?:^|\.)blocks\.\d+\.ghost1\.primary_conv\.conv\.weight$")
_MINDCV_MARKER = re.compile(r"(?:^|\.)blocks\.\d+\.features\.[01]\.")
_ZOO_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")
_ZOO_UNIT_RENAMES = (  # inside a bottleneck, first match wins
    (re.compile(r"^(ghost[12]\.(?:primary_conv|cheap_operation))\.conv\."), r"\1.0."),
    (re.compile(r"^(ghost[12]\.(?:primary_conv|cheap_operation))\.bn\."), r"\1.1."),
    (re.compile(r"^dw\.conv\."), "conv_dw."),
    (re.compile(r"^dw\.bn\."), "bn_dw."),
    (re.compile(r"^shortcut\.0\.conv\."), "shortcut.0."),
    (re.compile(r"^shortcut\.0\.bn\."), "shortcut.1."),
    (re.compile(r"^shortcut\.1\.conv\."), "shortcut.2."),
    (re.compile(r"^shortcut\.1\.bn\."), "shortcut.3."),
)
_ZOO_FINAL_RENAMES = ((re.compile(r"^conv\."), "0.conv."), (re.compile(r"^bn\."), "0.bn1."))

# Optimizer state of MindSpore's and MindCV's optimizers: per-weight slots and scalars.
_SLOT_PREFIXES = ("moments", "moment1", "moment2", "moment3", "accum", "accum_update", "stat", "adam_m", "adam_v",
                  "lion_m", "nadam_m", "nadam_v", "prev_gradient", "mean_square", "mean_grad", "moment", "linear",
                  "vhat")
_STATE_SCALARS = ("global_step", "learning_rate", "momentum", "beta1_power", "beta2_power", "mu_schedule",
                  "scale_sense", "loss_scale", "updates", "current_iterator_step", "last_overflow_iterator_step",
                  "epoch_num", "step_num")


def training_state_keys(keys) -> List[str]:
    """The keys that are a trainer's optimizer / loss-scale state rather than weights, in file order."""
    keys = list(keys)
    present = set(keys)
    state = []
    for key in keys:
        prefix, _, rest = key.partition(".")
        if key in _STATE_SCALARS or (prefix in _SLOT_PREFIXES and rest in present):
            state.append(key)
    return state


def layout_of(keys) -> Optional[str]:
    """"zoo", "mindcv" or None (none of the two) from a checkpoint's keys, EMA and optimizer copies included."""
    keys = list(keys)
    if any(_ZOO_MARKER.search(key) for key in keys):
        return "zoo"
    if any(_MINDCV_MARKER.search(key) for key in keys):
        return "mindcv"
    return None


def _zoo_names(keys, path):
    """Zoo key -> this repo's key; `path` names the file in errors."""
    flat = sorted({int(m.group(1)) for m in map(_ZOO_BLOCK_KEY.match, keys) if m})
    if len(flat) not in _ZOO_VARIANTS or flat != list(range(len(flat))):
        known = ", ".join(f"{n} ({source})" for n, (source, _) in _ZOO_VARIANTS.items())
        raise ValueError(f"{path} looks like a MindSpore model zoo GhostNet (keys like blocks.N.ghost1.primary_conv."
                         f"conv.weight) but has {len(flat)} entries blocks.0 ...; known variants have {known}")
    source, stages = _ZOO_VARIANTS[len(flat)]
    position = [(stage, block) for stage, size in enumerate(stages) for block in range(size)]
    names = {}
    for key in keys:
        match = _ZOO_BLOCK_KEY.match(key)
        if not match:
            names[key] = key
            continue
        index, rest = int(match.group(1)), match.group(2)
        if index < len(position):
            prefix, rules = "blocks.{}.{}.".format(*position[index]), _ZOO_UNIT_RENAMES
        else:
            prefix, rules = f"blocks.{len(stages)}.", _ZOO_FINAL_RENAMES
        for pattern, replacement in rules:
            if pattern.match(rest):
                rest = pattern.sub(replacement, rest, count=1)
                break
        names[key] = prefix + rest
    without_se = "" if any(".se." in key for key in keys) else ", without SE"
    moved = sum(old != new for old, new in names.items())
    return names, (f"is in the MindSpore model zoo's layout ({source}{without_se}): mapped {moved} keys "
                   f"(blocks.<n>.* -> blocks.<stage>.<block>.*, ConvUnit conv/bn -> this repo's cells)")


def _mindcv_names(keys):
    names, moved = {}, []
    for key in keys:
        match = _MINDCV_KEY.match(key)
        names[key] = key
        if match:
            stage, unit, leaf = match.groups()
            names[key] = f"blocks.{stage}.0.{_MINDCV_RENAMES[unit]}.{leaf}"
            moved.append(stage)
    stage = ",".join(sorted(set(moved)))
    stage = stage if len(set(moved)) == 1 else "{" + stage + "}"
    return names, (f"is in MindCV's layout: mapped {len(moved)} keys "
                   f"(blocks.{stage}.features.{{0,1}}.* -> blocks.{stage}.0.{{conv,bn1}}.*)")


def _summary(keys, limit=6):
    groups = Counter(key.partition(".")[0] + (".*" if "." in key else "") for key in keys)
    shown = [f"{name} ({count})" if count > 1 else name for name, count in groups.most_common()]
    return ", ".join(shown[:limit]) + (f", ... {len(shown) - limit} more groups" if len(shown) > limit else "")


def to_repo_names(weights: Dict, path: str = "checkpoint") -> Tuple[Dict, List[str]]:
    """-> (weights under this repo's names, notes): one note per thing done, to be printed after the file's name.

    A trainer's optimizer state is left out; a MindCV or model-zoo layout is renamed. Two keys that would take the
    same name are an error. Weights already in this repo's layout come back unchanged, with no note.
    """
    state = set(training_state_keys(weights))
    kept = [key for key in weights if key not in state]
    notes = [f"holds a trainer's optimizer state besides the weights: ignored {len(state)} keys "
             f"({_summary([k for k in weights if k in state])})"] if state else []
    layout = layout_of(kept)
    if layout is None:
        return {key: weights[key] for key in kept}, notes
    names, note = _zoo_names(kept, path) if layout == "zoo" else _mindcv_names(kept)
    taken = Counter(names.values())
    clashes = sorted(old for old, new in names.items() if taken[new] > 1)
    if clashes:
        raise ValueError(f"{path}: keys {', '.join(clashes[:8])} would take the same name in this repo's layout")
    return {names[key]: weights[key] for key in kept}, notes + [note]
