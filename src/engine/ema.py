"""Exponential moving average of the weights, updated inside the compiled train step.

Every parameter is averaged, BN moving statistics included (as timm's ModelEmaV2 does with buffers), so the EMA
weights form a complete model. The decay ramps up as min(ema_decay, (1 + n) / (10 + n)) after n updates: a
short run averages its recent steps instead of being anchored to the random initialisation for 1 / (1 - decay)
steps.
"""
import contextlib

import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Parameter, ParameterTuple, Tensor

from src.kernels import fused_ema_update

_ema_update = ops.MultitypeFuncGraph("ema_update")


@_ema_update.register("Tensor", "Tensor", "Tensor")
def _update_one(decay, average, value):
    return ops.assign(average, average * decay + value * (1.0 - decay))


_exchange = ops.MultitypeFuncGraph("exchange")


@_exchange.register("Tensor", "Tensor")
def _exchange_one(first, second):
    held = first * 1.0
    ops.assign(first, second)
    return ops.assign(second, held)


class _Exchange(nn.Cell):
    """Swaps the values of two parameter tuples in place, on the device.

    Host-side `set_data` / `assign_value` would rebind the parameters to new buffers, and a graph compiled
    before (the train step with loss scaling, whose update sits in a branch) would keep updating the old ones.
    """

    def __init__(self, first, second):
        super().__init__()
        self.first = first
        self.second = second
        self.hyper_map = ops.HyperMap()

    def construct(self):
        return self.hyper_map(_exchange, self.first, self.second)


class ModelEMA(nn.Cell):
    """Holds `ema.<name>` copies of `network`'s parameters; calling the cell performs one update."""

    PREFIX = "ema."

    def __init__(self, network: nn.Cell, decay: float):
        super().__init__(auto_prefix=False)
        self.decay = decay
        self.model_params = ParameterTuple(network.get_parameters())
        self.ema_params = self.model_params.clone(prefix=self.PREFIX.rstrip("."), init="same")
        self.num_updates = Parameter(Tensor(0.0, ms.float32), name="ema_num_updates", requires_grad=False)
        self.hyper_map = ops.HyperMap()
        self.fused_update = fused_ema_update() if all(p.dtype == ms.float32 for p in self.model_params) else None
        self._exchange = _Exchange(self.model_params, self.ema_params)

    def construct(self):
        updates = self.num_updates + 1.0
        decay = ops.minimum(self.decay, (1.0 + updates) / (10.0 + updates))
        ops.assign(self.num_updates, updates)
        if self.fused_update is not None:  # one kernel over all tensors on CPU
            return self.fused_update(decay.reshape(1), *self.ema_params, *self.model_params)
        return self.hyper_map(ops.partial(_ema_update, decay), self.ema_params, self.model_params)

    def averaged_weights(self) -> dict:
        """{model parameter name: EMA value}: the EMA weights as a plain model state."""
        return {p.name: e.value() for p, e in zip(self.model_params, self.ema_params)}

    @contextlib.contextmanager
    def swapped_in(self):
        """Run the block with the EMA weights in the model (evaluation), then put the trained weights back."""
        self._exchange()
        try:
            yield
        finally:
            self._exchange()
