"""Calling a network for inference without MindSpore's per-call walk over its cells."""
import mindspore as ms


def serving_function(net):
    """`net`'s forward as one MindSpore graph function (`mindspore.jit` of the cell): same graph, same outputs.

    Why: calling a Cell in graph mode sets its compile phase on every sub-cell, in Python, on every call (MindSpore
    2.10, `Cell.compile`): 1.2 ms of a 9 ms batch-1 call for ghostnet_100's inference form, whose src/kernels pass
    leaves 422 cells. The jit function of the cell is compiled once per input shape as the cell's graph is, and its
    calls skip the walk. Build it after the network is in its final form (eval mode, BN folded, accelerated)."""
    return ms.jit(net)
