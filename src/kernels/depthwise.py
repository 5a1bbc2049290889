"""Depthwise convolution through the C++ kernels in depthwise_conv.cc on CPU (see that file for why).

`DepthwiseConv2d` is an `nn.Conv2d` (same parameter, same checkpoint keys, same maths); on CPU its construct calls
the AOT custom operators, elsewhere, or when the kernels are switched off (export: a MINDIR must not depend on a
local shared library) or cannot be built, it is the plain convolution.
"""
import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "depthwise_conv.cc")
_CACHE_DIR = os.environ.get("GHOSTNET_KERNEL_CACHE",
                            os.path.join(os.path.expanduser("~"), ".cache", "ghostnet_mindspore", "kernels"))
_lock = threading.Lock()
_state = {"enabled": os.environ.get("GHOSTNET_CUSTOM_KERNELS", "1") != "0", "broken": None}


class KernelBuildError(RuntimeError):
    """The C++ kernels could not be compiled (no compiler, or a compile error)."""


@contextlib.contextmanager
def custom_kernels(enabled: bool):
    """Within the block, depthwise convs built from now on use (or not) the custom CPU kernels."""
    previous = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = previous


def _geometry_name(geometry):
    return "dw_k{}x{}_s{}x{}_p{}x{}".format(*geometry)


def build_library(geometry) -> str:
    """The shared library for (kh, kw, sh, sw, ph, pw), compiled once and cached (keyed by the source's hash)."""
    with open(_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    name = _geometry_name(geometry)
    path = os.path.join(_CACHE_DIR, f"{name}_{digest}.so")
    with _lock:
        if os.path.exists(path):
            return path
        compiler = shutil.which(os.environ.get("CXX", "g++"))
        if compiler is None:
            raise KernelBuildError("no C++ compiler (g++) on PATH")
        os.makedirs(_CACHE_DIR, exist_ok=True)
        kh, kw, sh, sw, ph, pw = geometry
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=_CACHE_DIR)
        os.close(fd)
        command = [compiler, "-O3", "-march=native", "-shared", "-fPIC", "-std=c++17", "-pthread",
                   f"-DDW_KH={kh}", f"-DDW_KW={kw}", f"-DDW_SH={sh}", f"-DDW_SW={sw}", f"-DDW_PH={ph}",
                   f"-DDW_PW={pw}", f"-DDW_NAME(fn)={name}_##fn", _SOURCE, "-o", tmp]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            os.unlink(tmp)
            raise KernelBuildError(f"compiling {_SOURCE} failed:\n{result.stderr[-2000:]}")
        os.replace(tmp, path)  # atomic: concurrent processes never load a half-written library
        return path


def kernels_usable() -> bool:
    """Whether depthwise convs built now run on the custom kernels (CPU target, enabled, compiler works)."""
    if not _state["enabled"] or ms.get_context("device_target") != "CPU":
        return False
    if _state["broken"] is None:
        try:
            build_library((3, 3, 1, 1, 1, 1))
            _state["broken"] = False
        except KernelBuildError as err:
            warnings.warn(f"custom depthwise kernels unavailable, using nn.Conv2d: {err}")
            _state["broken"] = True
    return not _state["broken"]


def _depthwise_ops(geometry):
    """(forward, input_grad, weight_grad) Custom ops for one geometry; forward carries its gradient."""
    library = build_library(geometry)
    name = _geometry_name(geometry)
    kh, kw, sh, sw, ph, pw = geometry

    def out_shape(x, _w):
        return [x[0], x[1], (x[2] + 2 * ph - kh) // sh + 1, (x[3] + 2 * pw - kw) // sw + 1]

    input_grad = ops.Custom(f"{library}:{name}_input_grad", lambda x, _w, _dy: x, lambda x, _w, _dy: x,
                            func_type="aot")
    weight_grad = ops.Custom(f"{library}:{name}_weight_grad", lambda _x, w, _dy: w, lambda _x, w, _dy: w,
                             func_type="aot")

    def bprop(x, w, _out, dout):
        return input_grad(x, w, dout), weight_grad(x, w, dout)

    forward = ops.Custom(f"{library}:{name}_forward", out_shape, lambda x, _w: x, func_type="aot", bprop=bprop)
    return forward


class DepthwiseConv2d(nn.Conv2d):
    """`nn.Conv2d(channels, channels, kernel_size, stride, pad_mode='pad', padding, group=channels, has_bias)`."""

    def __init__(self, channels, kernel_size, stride=1, padding=0, has_bias=False):
        super().__init__(channels, channels, kernel_size, stride=stride, pad_mode="pad", padding=padding,
                         group=channels, has_bias=has_bias)
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom, left, right = (self.padding,) * 4 if isinstance(self.padding, int) else self.padding
        self.custom = None
        if top == bottom and left == right and tuple(self.dilation) in ((1, 1), (1, 1, 1, 1)) and kernels_usable():
            self.custom = _depthwise_ops((kh, kw, sh, sw, top, left))

    def construct(self, x):
        if self.custom is None:
            return super().construct(x)
        y = self.custom(x, self.weight)
        return self.bias_add(y, self.bias) if self.has_bias else y

    def add_flags_recursive(self, **flags):
        """Mixed precision (to_float / AMP levels) marks cells to run in float16; the kernels are float32 only, so
        this cell stays float32, as AMP keeps BatchNorm (its inputs are cast, its output is float32)."""
        if self.custom is not None and any(flags.get(key) for key in ("fp16", "bf16")):
            flags = dict(flags, fp16=False, bf16=False, fp32=True)
        return super().add_flags_recursive(**flags)
