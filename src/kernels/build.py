"""Compiling and caching the C++ kernels of this package, and whether this process can use them.

Each library is built once per (source, macro set) with g++ -O3 -march=native, cached under
`$GHOSTNET_KERNEL_CACHE` (default ~/.cache/ghostnet_mindspore/kernels) with a hash of the sources and of this CPU's
instruction-set flags in its name, so an edited kernel is rebuilt, and a cache shared by machines with different
CPUs never loads a library compiled for another instruction set.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings

import mindspore as ms

from src.runtime import cpu_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_HEADERS = ("parallel.h",)
_CACHE_DIR = os.environ.get("GHOSTNET_KERNEL_CACHE",
                            os.path.join(os.path.expanduser("~"), ".cache", "ghostnet_mindspore", "kernels"))
_lock = threading.Lock()
_state = {"broken": None}


class KernelBuildError(RuntimeError):
    """The C++ kernels could not be compiled (no compiler, or a compile error)."""


def build_library(source: str, name: str, defines: dict, includes: tuple = ()) -> str:
    """Path of `source` (a file of this package) compiled with `-D` `defines` into lib `name`, built if needed.
    `includes`: the other files of this package that `source` includes (they are part of the library's hash)."""
    digest = hashlib.sha256(" ".join(sorted(cpu_flags())).encode())  # -march=native depends on the CPU
    for file in (source, *_HEADERS, *includes):
        with open(os.path.join(_HERE, file), "rb") as f:
            digest.update(f.read())
    path = os.path.join(_CACHE_DIR, f"{name}_{digest.hexdigest()[:12]}.so")
    with _lock:
        if os.path.exists(path):
            return path
        compiler = shutil.which(os.environ.get("CXX", "g++"))
        if compiler is None:
            raise KernelBuildError("no C++ compiler (g++) on PATH")
        os.makedirs(_CACHE_DIR, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=_CACHE_DIR)
        os.close(fd)
        command = [compiler, "-O3", "-march=native", "-shared", "-fPIC", "-std=c++17", "-pthread",
                   *(f"-D{key}={value}" for key, value in defines.items()), os.path.join(_HERE, source), "-o", tmp]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            os.unlink(tmp)
            raise KernelBuildError(f"compiling {source} failed:\n{result.stderr[-2000:]}")
        os.replace(tmp, path)  # atomic: concurrent processes never load a half-written library
        return path


def kernels_usable() -> bool:
    """Whether cells built now can run the custom kernels: CPU target and a test build works (once per process;
    otherwise a warning, and the cells run MindSpore's own ops)."""
    if ms.get_context("device_target") != "CPU":
        return False
    if _state["broken"] is None:
        try:
            build_library("depthwise_conv.cc", "dw_k3x3_s1x1_p1x1", _depthwise_defines((3, 3, 1, 1, 1, 1)))
            _state["broken"] = False
        except KernelBuildError as err:
            warnings.warn(f"custom CPU kernels unavailable, using MindSpore's own ops: {err}")
            _state["broken"] = True
    return not _state["broken"]


def _depthwise_defines(geometry) -> dict:
    kh, kw, sh, sw, ph, pw = geometry
    return {"DW_KH": kh, "DW_KW": kw, "DW_SH": sh, "DW_SW": sw, "DW_PH": ph, "DW_PW": pw,
            "DW_NAME(fn)": f"{depthwise_name(geometry)}_##fn"}


def depthwise_name(geometry) -> str:
    return "dw_k{}x{}_s{}x{}_p{}x{}".format(*geometry)


def depthwise_library(geometry) -> str:
    """The depthwise-conv library for (kh, kw, sh, sw, ph, pw)."""
    return build_library("depthwise_conv.cc", depthwise_name(geometry), _depthwise_defines(geometry))


def ghost_module_library(geometry) -> str:
    """The Ghost module inference library for the cheap conv's (kh, kw, sh, sw, ph, pw): its 1x1 conv and depthwise
    conv in one launch (ghost_module.cc, which includes both kernels' sources)."""
    name = f"ghost_{depthwise_name(geometry)}"
    return build_library("ghost_module.cc", name, {**_depthwise_defines(geometry), "DW_NAME(fn)": f"{name}_##fn"},
                         includes=("pointwise_conv.cc", "depthwise_conv.cc"))


def ghost_bottleneck_library(cheap_geometry, block_geometry) -> str:
    """The GhostNet bottleneck inference library (ghost_bottleneck.cc) for the Ghost modules' cheap conv geometry and
    the block's own depthwise conv geometry (the strided conv's or the shortcut's)."""
    name = f"bottleneck_{depthwise_name(cheap_geometry)}_{depthwise_name(block_geometry)}"
    block = {f"B{key}": value for key, value in _depthwise_defines(block_geometry).items() if key != "DW_NAME(fn)"}
    return build_library("ghost_bottleneck.cc", name,
                         {**_depthwise_defines(cheap_geometry), "DW_NAME(fn)": f"{name}_cheap_##fn", **block,
                          "BDW_NAME(fn)": f"{name}_block_##fn"},
                         includes=("ghost_module.cc", "squeeze_excite.cc", "pointwise_conv.cc", "depthwise_conv.cc"))


def squeeze_excite_library() -> str:
    """The SE inference library (squeeze_excite.cc, which includes pointwise_conv.cc)."""
    return build_library("squeeze_excite.cc", "squeeze_excite", {}, includes=("pointwise_conv.cc",))


def pointwise_library() -> str:
    """The 1x1 conv + bias (+ ReLU) inference library (no geometry: one build)."""
    return build_library("pointwise_conv.cc", "pointwise", {})


def keep_float32(cell_flags: dict) -> dict:
    """Mixed-precision flags (to_float / AMP levels) for a cell whose kernels are float32 only: it stays float32,
    as AMP keeps BatchNorm (its inputs are cast, its outputs are float32)."""
    if any(cell_flags.get(key) for key in ("fp16", "bf16")):
        return dict(cell_flags, fp16=False, bf16=False, fp32=True)
    return cell_flags
