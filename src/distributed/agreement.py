"""Ranks of one job must run the same code on the same config and data: checked once, before the first step.

Each rank describes its run as a flat `{key: value}` fingerprint (`run_fingerprint`): every config key as saved
in config.yaml, a hash of every source file of the repo, the MindSpore version, and the datasets as read (size,
class list, channels, normalisation). The ranks gather all fingerprints (`gather_json`) and every rank raises the
same `RanksDisagree` naming each differing key and which ranks hold which value.

Two config keys may differ between ranks: `data_dir` (each host may mount the data at its own path; what was read
from it is compared instead) and `num_workers` (a host's loading threads, capped at its CPU count anyway).
"""
import dataclasses
import glob
import hashlib
import json
import os

from src.distributed import DistInfo, gather_json

HOST_LOCAL_KEYS = ("data_dir", "num_workers")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE_PATTERNS = ("*.py", "src/**/*.py", "src/**/*.cc", "src/**/*.h")


class RanksDisagree(RuntimeError):
    """Ranks started with different configs, code or data; the message names the keys and the ranks."""


def code_fingerprint(root: str = REPO) -> dict:
    """`{"code:<path>": sha256 prefix}` of the entry scripts and every source file under src/ (about 1 MB)."""
    files = sorted({os.path.relpath(p, root) for pattern in SOURCE_PATTERNS
                    for p in glob.glob(os.path.join(root, pattern), recursive=True)})
    result = {}
    for path in files:
        with open(os.path.join(root, path), "rb") as f:
            result[f"code:{path}"] = hashlib.sha256(f.read()).hexdigest()[:16]
    return result


def run_fingerprint(cfg, datasets: dict) -> dict:
    """What must be equal on every rank, as strings: config keys, code, MindSpore version, datasets as read.

    `datasets` maps a name (e.g. "train") to that split's `DatasetInfo`."""
    import mindspore

    fingerprint = {f"config:{key}": json.dumps(value) for key, value in dataclasses.asdict(cfg).items()
                   if key not in HOST_LOCAL_KEYS}
    for name, info in datasets.items():
        for field in ("num_samples", "num_classes", "in_channels", "class_names", "mean", "std"):
            fingerprint[f"{name} data:{field}"] = json.dumps(getattr(info, field), default=str)
    fingerprint["mindspore version"] = mindspore.__version__
    fingerprint.update(code_fingerprint())
    return fingerprint


def _shown(value: str, width: int = 60) -> str:
    return value if len(value) <= width else value[:width - 3] + "..."


def disagreements(fingerprints: list) -> list:
    """One line per key whose value is not the same on every rank (fingerprints[r] is rank r's), e.g.
    `config:batch_size: 8 on rank 0, 2; 16 on rank 1`; a key a rank lacks shows as `(absent)`."""
    lines = []
    for key in sorted(set().union(*fingerprints)):
        holders = {}
        for rank, fingerprint in enumerate(fingerprints):
            holders.setdefault(fingerprint.get(key, "(absent)"), []).append(rank)
        if len(holders) > 1:
            lines.append(f"{key}: " + "; ".join(
                f"{_shown(value)} on rank {', '.join(map(str, ranks))}" for value, ranks in holders.items()))
    return lines


def check_ranks_agree(dist: DistInfo, fingerprint: dict, max_lines: int = 20):
    """Every rank must call it (a collective); raises RanksDisagree on every rank if any key differs."""
    if dist.world_size == 1:
        return
    lines = disagreements(gather_json(fingerprint))
    if lines:
        shown = lines[:max_lines] + ([f"... and {len(lines) - max_lines} more"] if len(lines) > max_lines else [])
        raise RanksDisagree(f"rank {dist.rank} of {dist.world_size}: the ranks were started with different "
                            f"configs, code or data; every rank must run the same:\n  " + "\n  ".join(shown))
