"""Process-level set-up: this CPU's ISA flags, and oneDNN's ISA cap (set before mindspore is imported, lifted
before oneDNN's first primitive when the CPU kernels leave oneDNN only 1x1 convs)."""
import ctypes
import os


def cpu_flags() -> set:
    """The instruction-set flags of this CPU (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """This CPU's model name (Linux /proc/cpuinfo), which records keep: float sums differ between CPUs."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


_ONEDNN_ISA = {"capped": False, "lifted": False}
_DNNL_CPU_ISA_AVX512_CORE = 0x27  # oneDNN's dnnl_cpu_isa_avx512_core


def cap_onednn_isa():
    """Cap oneDNN at AVX2 on AVX-512 CPUs unless the user chose an ISA (ONEDNN_MAX_CPU_ISA, read when oneDNN starts).

    With MindSpore's NCHW tensors, AVX-512 oneDNN runs every k x k and depthwise conv in its reference kernel (80x
    slower for a 3x3 conv); with AVX2 it picks a jit gemm kernel.
    """
    if "ONEDNN_MAX_CPU_ISA" in os.environ:
        return
    if "avx512f" in cpu_flags():
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        _ONEDNN_ISA["capped"] = True


def lift_onednn_isa_cap() -> bool:
    """Lift the cap that cap_onednn_isa set, to AVX-512 (oneDNN's 1x1 convs and their gradients ran 1.2-1.8x faster
    with it: docs/results/cpu_performance.md), for a process whose oneDNN convs are all 1x1: src/kernels.accelerate
    calls it when its kernels take every other conv. Whether oneDNN now runs uncapped: never where the user chose
    an ISA, and only before oneDNN's first primitive, which fixes the ISA for the whole process."""
    if _ONEDNN_ISA["capped"] and not _ONEDNN_ISA["lifted"]:
        import mindspore
        try:
            dnnl = ctypes.CDLL(os.path.join(os.path.dirname(mindspore.__file__), "lib", "libdnnl.so.3"))
        except OSError:
            return False
        _ONEDNN_ISA["lifted"] = dnnl.dnnl_set_max_cpu_isa(_DNNL_CPU_ISA_AVX512_CORE) == 0
    return _ONEDNN_ISA["lifted"]


def onednn_isa_lifted() -> bool:
    """Whether lift_onednn_isa_cap lifted the cap in this process (then oneDNN's k x k convs are slow here)."""
    return _ONEDNN_ISA["lifted"]
