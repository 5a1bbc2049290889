"""Model cost: parameters, multiply-accumulates, CPU latency, forward-pass memory, Ghost-module speed-up.

MACs follow the convention of the papers' FLOPs and of timm's measurements: every `nn.Conv2d` and `nn.Dense`
is counted (out_h * out_w * out_c * in_c / groups * kh * kw, resp. in * out per sample); BN, activations, pooling
and adds are not, and BN is not folded. Only cells are seen: a convolution called as a bare `ops` function
inside `construct` is not counted.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import mindspore
import mindspore.nn as nn

from src.models import create_model

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def count_params(net):
    """Number of trainable parameters (BN moving statistics excluded)."""
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


def _cell_macs(cell, output):
    """Per-sample MACs of one conv / dense call, from its weight and output shapes."""
    weight = cell.weight.shape
    if isinstance(cell, nn.Conv2d):
        _, out_c, out_h, out_w = output.shape
        return out_c * out_h * out_w * int(np.prod(weight[1:]))  # weight: (out, in / groups, kh, kw)
    return int(np.prod(weight))


def count_macs(net, input_shape):
    """Multiply-accumulates of one forward pass for one sample of `input_shape` (C, H, W).

    Runs a zero batch of one in PyNative mode with forward hooks on every conv / dense cell; the network's
    train flag and the context mode are restored afterwards.
    """
    previous_mode, was_training = mindspore.get_context("mode"), net.training
    total = [0]

    def hook(cell, _inputs, output):
        total[0] += _cell_macs(cell, output)

    handles = [cell.register_forward_hook(hook) for _, cell in net.cells_and_names()
               if isinstance(cell, (nn.Conv2d, nn.Dense))]
    try:
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
        net.set_train(False)
        net(mindspore.Tensor(np.zeros((1, *input_shape), np.float32)))
    finally:
        for handle in handles:
            handle.remove()
        net.set_train(was_training)
        mindspore.set_context(mode=previous_mode)
    return total[0]


def measure_latency(net, input_shape, repeats=20, batch_size=1, warmup=3):
    """Median inference time in ms of a `batch_size` x `input_shape` batch, graph mode, compile and warm-up excluded."""
    previous_mode, was_training = mindspore.get_context("mode"), net.training
    x = mindspore.Tensor(np.random.default_rng(0).standard_normal((batch_size, *input_shape), np.float32))
    times = []
    try:
        mindspore.set_context(mode=mindspore.GRAPH_MODE)
        net.set_train(False)
        for _ in range(warmup):
            net(x).asnumpy()
        for _ in range(repeats):
            start = time.perf_counter()
            net(x).asnumpy()
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        net.set_train(was_training)
        mindspore.set_context(mode=previous_mode)
    return statistics.median(times)


def peak_forward_memory(name, input_shape, batch_size=1, **model_kwargs):
    """Peak resident-memory growth in MiB of the first inference of registered model `name` (PyNative, Linux).

    MindSpore allocates activations in C++, out of tracemalloc's sight, so a fresh subprocess builds the model,
    resets the kernel's RSS high-water mark and reports how far one forward pass raises it (getrusage's ru_maxrss
    is updated lazily and misses it). Includes kernel set-up and memory-pool slack: read it as an upper bound.
    """
    spec = dict(name=name, input_shape=list(input_shape), batch_size=batch_size, kwargs=model_kwargs)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_REPO_ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", __name__, json.dumps(spec)], env=env, cwd=_REPO_ROOT,
                            capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1]) / 1024


def _status_kib(key):
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def _forward_peak_kib(spec):
    """Run in the fresh process of `peak_forward_memory`: RSS high-water growth of one forward, in KiB."""
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    net = create_model(spec["name"], **spec["kwargs"])
    net.set_train(False)
    x = mindspore.Tensor(np.zeros((spec["batch_size"], *spec["input_shape"]), np.float32))
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kib("VmRSS:")
    net(x).asnumpy()
    return _status_kib("VmHWM:") - before


def ghost_speedup(c, n, k, d, s):
    """Theoretical speed-up r_s of a Ghost module over the k x k conv it replaces (paper, eq. 4).

    c inputs, n outputs, d x d cheap depthwise ops, ratio s: n*c*k*k / ((n/s)*c*k*k + (s-1)*(n/s)*d*d).
    """
    return (n * c * k * k) / ((n / s) * c * k * k + (s - 1) * (n / s) * d * d)


if __name__ == "__main__":
    print(_forward_peak_kib(json.loads(sys.argv[1])))
