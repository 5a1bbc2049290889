"""GhostNet family for MindSpore. Importing `src` first caps oneDNN's ISA (src/runtime.py) before mindspore loads."""
from src.runtime import cap_onednn_isa

cap_onednn_isa()
