"""Model registry: every variant is a named builder plus the metadata users and tools need.

`create_model("ghostnet_100", num_classes=10, in_channels=1)` is the one entry point used by the configs,
train.py, validate.py, export.py and the scripts. The metadata (input size, crop_pct, reference sizes and
accuracy) lives next to each builder so that tables and tests are generated from it, not typed twice.
"""
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a registered variant, independent of any instance of it."""

    name: str
    family: str
    input_size: Tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    num_classes: int = 1000
    first_conv: str = "conv_stem"
    classifier: str = "classifier"
    reference: Dict[str, object] = field(default_factory=dict)  # paper/measured params, MACs, top-1, source


_BUILDERS: Dict[str, Callable] = {}
_INFO: Dict[str, ModelInfo] = {}


def register_model(family: str, **meta):
    """Decorator registering `fn(num_classes, in_channels, **options) -> Cell` under its function name."""

    def wrap(fn: Callable) -> Callable:
        name = fn.__name__
        if name in _BUILDERS:
            raise ValueError(f"model '{name}' is registered twice")
        _BUILDERS[name] = fn
        _INFO[name] = ModelInfo(name=name, family=family, **meta)
        return fn

    return wrap


def _unknown(name: str) -> KeyError:
    close = difflib.get_close_matches(name, list(_BUILDERS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; registered: {', '.join(sorted(_BUILDERS))}"
    return KeyError(f"unknown model '{name}'{hint}")


def create_model(name: str, num_classes: int = 1000, in_channels: int = 3, **options):
    """Build a registered model. Options (e.g. `small_input`, `drop_rate`, `width`) go to the builder."""
    if name not in _BUILDERS:
        raise _unknown(name)
    return _BUILDERS[name](num_classes=num_classes, in_channels=in_channels, **options)


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Every registered name, sorted; `pattern` filters with shell wildcards (`ghostnet_*`)."""
    names = sorted(_BUILDERS)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def model_info(name: str) -> ModelInfo:
    if name not in _INFO:
        raise _unknown(name)
    return _INFO[name]
