"""Put the repo root on sys.path and import `src` before anything imports mindspore (it picks the CPU kernels)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401
