"""Read PyTorch checkpoints into numpy without torch and without running code from the file.

A zip `.pth` (torch >= 1.6) is unpickled with only the globals a state_dict needs (as `torch.load(weights_only=True)`);
any other global is refused by name. `.safetensors` files are read with safetensors' numpy API. `load_state_dict`
also unwraps training checkpoints (`state_dict`, timm's `state_dict_ema`, `model`) and strips DataParallel's
`module.` prefix.
"""
import argparse
import collections
import pickle
import zipfile
from pathlib import Path
from typing import Dict

import numpy as np
from safetensors.numpy import load_file


class UnsafeCheckpointError(ValueError):
    """The pickle names a global outside the allowlist: it could run code, so it is not loaded."""


# torch storage class name -> numpy dtype of one element (bfloat16 is read as its raw 16 bits).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128,
}

# Pickle protocol 2 header + the 10-byte magic number that starts every pre-1.6 (non-zip) torch.save file.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

_EMA_KEYS = ("state_dict_ema", "model_ema")
_PLAIN_KEYS = ("state_dict", "model")


class _StorageType:
    """Stands in for `torch.FloatStorage` & co.: only its name is needed, to pick the dtype."""

    def __init__(self, name):
        self.name = name


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """torch._utils._rebuild_tensor_v2 for numpy: a copy of the strided view, bounds-checked first."""
    size, stride = tuple(size), tuple(stride)
    if (not isinstance(storage, np.ndarray) or len(size) != len(stride)
            or min(size + stride + (storage_offset,)) < 0):
        raise ValueError(f"malformed tensor record: offset {storage_offset}, size {size}, stride {stride}")
    if 0 in size:
        return np.empty(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise ValueError(f"tensor (offset {storage_offset}, size {size}, stride {stride}) reads past the end of "
                         f"its storage ({storage.size} elements)")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], size, tuple(s * item for s in stride))
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """nn.Parameter's pickle: the tensor itself is all a state_dict needs."""
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    # timm's training checkpoints store the run's `args`; a Namespace is a plain attribute bag.
    ("argparse", "Namespace"): argparse.Namespace,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_ALLOWED_GLOBALS` and reads storages from the zip archive."""

    def __init__(self, archive: zipfile.ZipFile, root: str, byteorder: str):
        super().__init__(archive.open(f"{root}data.pkl"))
        self._archive, self._root, self._byteorder = archive, root, byteorder
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        hint = (" This is a TorchScript archive (torch.jit.save); save model.state_dict() with torch.save instead."
                if module.startswith("__torch__") else "")
        raise UnsafeCheckpointError(
            f"refusing to load global '{module}.{name}': only tensors, containers and a few plain types are read "
            f"from PyTorch checkpoints, because unpickling anything else can run arbitrary code.{hint}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ValueError(f"unsupported persistent record in checkpoint: {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            self._storages[key] = self._read_storage(storage_type.name, str(key), numel)
        return self._storages[key]

    def _read_storage(self, type_name, key, numel):
        dtype = np.dtype(_STORAGE_DTYPES[type_name]).newbyteorder("<" if self._byteorder == "little" else ">")
        raw = self._archive.read(f"{self._root}data/{key}")
        if len(raw) != numel * dtype.itemsize:
            raise ValueError(f"storage '{key}' holds {len(raw)} bytes, expected {numel} x {dtype.itemsize}")
        array = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))
        if type_name == "BFloat16Storage":
            array = (array.astype(np.uint32) << 16).view(np.float32)  # bfloat16 is float32's upper half
        return array


def read_torch_file(path) -> object:
    """The object a `torch.save` zip archive holds, tensors as numpy arrays (bfloat16 widened to float32)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
        if head == _LEGACY_MAGIC:
            raise ValueError(f"{path} uses the legacy (torch < 1.6) serialization format, which can only be read "
                             "by unpickling it with torch. Re-save it with a newer torch: "
                             "torch.save(torch.load(old, weights_only=True), new)")
        raise ValueError(f"{path} is not a PyTorch checkpoint (expected a torch.save zip archive or .safetensors)")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one '<root>/data.pkl' in the archive, found {pickles or 'none'}")
        root = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        byteorder = archive.read(f"{root}byteorder").decode().strip() if f"{root}byteorder" in names else "little"
        if byteorder not in ("little", "big"):
            raise ValueError(f"{path}: unknown byteorder record {byteorder!r}")
        return _WeightsUnpickler(archive, root, byteorder).load()


def unwrap_state_dict(obj, use_ema: bool = False) -> Dict[str, np.ndarray]:
    """The name -> array mapping inside a checkpoint: the object itself, or its state_dict / EMA entry.

    Training checkpoints wrap the weights next to the epoch and optimizer state. `use_ema` picks the EMA copy
    (`state_dict_ema`, as timm saves it, or `model_ema`); otherwise `state_dict` or `model` is taken. A
    `module.` prefix (DataParallel) is removed.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint holds a {type(obj).__name__}, expected a dict of tensors")
    is_state = bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())
    if is_state and use_ema:
        raise ValueError("the checkpoint is a bare state_dict without EMA weights; drop use_ema")
    if not is_state:
        keys = _EMA_KEYS if use_ema else _PLAIN_KEYS
        found = [k for k in keys if isinstance(obj.get(k), dict)]
        if not found:
            raise ValueError(f"no {'EMA ' if use_ema else ''}state_dict in the checkpoint: looked for "
                             f"{', '.join(map(repr, keys))}; top-level keys: {', '.join(map(repr, obj))}")
        obj = obj[found[0]]
    not_tensors = sorted(k for k, v in obj.items() if not isinstance(v, np.ndarray))
    if not_tensors:
        raise ValueError(f"state_dict entries that are not tensors: {', '.join(not_tensors)}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_state_dict(path, use_ema: bool = False) -> Dict[str, np.ndarray]:
    """name -> numpy array from a `.safetensors` file or a `torch.save` archive (`.pth`, `.pth.tar`, `.pt`)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        if use_ema:
            raise ValueError(f"{path}: a .safetensors file holds one set of weights; drop use_ema")
        try:
            return unwrap_state_dict(load_file(str(path)))
        except TypeError as err:  # numpy has no bfloat16, so safetensors' numpy API cannot return it
            raise ValueError(f"{path}: {err}; re-save the file with float32 tensors") from err
    return unwrap_state_dict(read_torch_file(path), use_ema)
