"""Averaging the BN moving statistics across ranks (timm's `distribute_bn` with reduce=True).

Data parallelism keeps the trainable weights identical on every rank, but each rank's BatchNorm moving mean and
variance follow its own batches. Averaging them before validation makes every rank hold one model: the summed
validation figures are those of that model on the whole set, and rank 0's checkpoints hold it.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import ParameterTuple

_mean_over_ranks = ops.MultitypeFuncGraph("mean_over_ranks")


@_mean_over_ranks.register("Function", "Number", "Tensor")
def _mean_one(all_reduce, scale, param):
    return ops.assign(param, all_reduce(param) * scale)


def moving_statistics(network, ema=None) -> list:
    """The network's non-trainable float parameters (BN moving mean / variance) and, with an EMA, their EMA
    copies."""
    params = [p for p in network.get_parameters() if not p.requires_grad and p.dtype == ms.float32]
    if ema is not None:
        names = {p.name for p in params}
        params += [e for p, e in zip(ema.model_params, ema.ema_params) if p.name in names]
    return params


class AverageAcrossRanks(nn.Cell):
    """Calling it replaces each parameter by its mean over the ranks, in place on the device (host-side
    `set_data` would rebind the parameters under graphs compiled before). Every rank must call it."""

    def __init__(self, params, world_size: int):
        super().__init__(auto_prefix=False)
        self.params = ParameterTuple(params)
        self.scale = 1.0 / world_size
        self.all_reduce = ops.AllReduce()
        self.hyper_map = ops.HyperMap()

    def construct(self):
        return self.hyper_map(ops.partial(_mean_over_ranks, self.all_reduce, self.scale), self.params)


def rank_averager(params, world_size: int):
    """`AverageAcrossRanks(params)`, or a no-op when there is nothing to average (a model without BatchNorm)."""
    params = list(params)
    return AverageAcrossRanks(params, world_size) if params else (lambda: None)
