"""Process-level set-up: CPU kernel selection (before mindspore is imported) and the MindSpore context."""
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


def configure_cpu_kernels():
    """Cap oneDNN at AVX2 on AVX-512 CPUs unless the user chose an ISA.

    MindSpore hands oneDNN NCHW tensors; on AVX-512 CPUs oneDNN then falls back to its reference kernel for
    every k x k and depthwise conv (80x slower for a 3x3 conv), while with AVX2 it picks a jit gemm kernel.
    The variable is read when oneDNN initialises, so this must run before mindspore is imported.
    """
    if "ONEDNN_MAX_CPU_ISA" in os.environ:
        return
    if "avx512f" in cpu_flags():
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
