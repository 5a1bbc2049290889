"""GhostNet family for MindSpore. Importing `src` first tunes the CPU kernels before mindspore loads."""
from src.runtime import configure_cpu_kernels

configure_cpu_kernels()
