"""Process-level set-up that must run before mindspore is imported: this CPU's ISA flags and oneDNN's ISA cap."""
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


def cap_onednn_isa():
    """Cap oneDNN at AVX2 on AVX-512 CPUs unless the user chose an ISA (ONEDNN_MAX_CPU_ISA, read when oneDNN starts).

    With MindSpore's NCHW tensors, AVX-512 oneDNN runs every k x k and depthwise conv in its reference kernel (80x
    slower for a 3x3 conv); with AVX2 it picks a jit gemm kernel.
    """
    if "ONEDNN_MAX_CPU_ISA" in os.environ:
        return
    if "avx512f" in cpu_flags():
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
