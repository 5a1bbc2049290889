"""One optimisation step as a single cell: forward, loss, gradients, reduction across devices, loss-scale
check, clipping, optimizer update and EMA update.

In graph mode the whole step compiles into one graph; in PyNative mode the same `construct` runs eagerly.
Options that are off (no loss scaling, no clipping, no EMA, one device) are pruned when the graph is compiled.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Parameter, ParameterTuple

from src.kernels import AllFinite, fused_copy


def mixed_precision(network: nn.Cell, amp_level: str) -> nn.Cell:
    """The network under MindSpore's AMP level (O0: unchanged). Parameters stay float32 and keep their names.

    O1 casts listed ops to float16, O2 casts the network except BN, O3 casts everything; the returned cell
    hands back float32 outputs. MindSpore 2.10 has float16 conv kernels on CPU too, so every level runs there.
    """
    return network if amp_level == "O0" else ms.amp.auto_mixed_precision(network, amp_level)


def create_loss_scaler(cfg):
    """None, a fixed scale, or a dynamic scale (x2 every 1000 finite steps, /2 on overflow); see cfg.loss_scale."""
    if cfg.loss_scale == "none":
        return None
    if cfg.loss_scale == "fixed":
        return ms.amp.StaticLossScaler(cfg.loss_scale_value)
    if cfg.loss_scale == "dynamic":
        return ms.amp.DynamicLossScaler(cfg.loss_scale_value, scale_factor=2, scale_window=1000)
    raise ValueError(f"unknown loss_scale '{cfg.loss_scale}'")


def loss_scaler_state(loss_scaler) -> list:
    """The scaler's Parameters (current scale, steps since the last overflow), to be checkpointed."""
    return [] if loss_scaler is None else [v for v in vars(loss_scaler).values() if isinstance(v, Parameter)]


def gradient_reducer(dist, params):
    """Averages gradients over the devices of a data-parallel run; None on a single device."""
    if dist.world_size == 1:
        return None
    return nn.DistributedGradReducer(params, mean=True, degree=dist.world_size)


class TrainStep(nn.Cell):
    """`step(images, soft_labels) -> (loss, correct, updated)`: updates the weights and returns the unscaled loss,
    the number of samples whose arg-max prediction matches the arg-max of the target, and 1 if the weights were
    updated, 0 if the step was skipped (non-finite loss or gradients). All three stay on the device until read.

    With knowledge distillation the step is `step(images, soft_labels, teacher_logits)` and `loss_fn` takes the
    teacher's logits as its third argument (loss.DistillationLoss). They are an input, computed before the step
    (src/engine/distill.py), so no gradient reaches the teacher, whose weights are not among this cell's."""

    def __init__(self, network, loss_fn, optimizer, ema=None, clip_grad_norm=0.0, loss_scaler=None,
                 grad_reducer=None):
        super().__init__(auto_prefix=False)  # parameter names stay those of the network
        self.network = network
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.ema = ema
        self.clip_grad_norm = clip_grad_norm
        self.loss_scaler = loss_scaler
        self.grad_reducer = grad_reducer
        # A step whose loss or gradients are not finite changes nothing: no update, and the BN statistics that its
        # forward pass moved are put back from `buffer_backup`. Its third output (1/0) tells the trainer which it was.
        self.buffers = ParameterTuple([p for p in network.get_parameters() if not p.requires_grad])
        self.buffer_backup = self.buffers.clone("nonfinite_backup", init="same")
        self.hyper_map = ops.HyperMap()
        self.assign = ops.Assign()
        # on CPU one launch copies them all (one Assign per tensor costs a launch each: 320 in GhostNet 1.0x)
        self.copy_all = fused_copy() if all(b.dtype == ms.float32 for b in self.buffers) else None
        # one kernel over the loss and all gradients on CPU; gradients have their (float32) parameters' dtype
        self.all_finite = AllFinite(float32_inputs=all(w.dtype == ms.float32 for w in self.weights))

    def forward(self, images, labels, teacher_logits):
        logits = self.network(images)
        loss = self.loss_fn(logits, labels, *teacher_logits)  # a tuple: empty, or the teacher's logits
        scaled_loss = loss if self.loss_scaler is None else self.loss_scaler.scale(loss)
        return scaled_loss, loss, logits

    def construct(self, images, labels, *teacher_logits):
        if self.buffers:
            images = ops.depend(images, self._copy(self.buffer_backup, self.buffers))
        grad_fn = ops.value_and_grad(self.forward, None, self.weights, has_aux=True)
        (_, loss, logits), grads = grad_fn(images, labels, teacher_logits)
        if self.grad_reducer is not None:
            grads = self.grad_reducer(grads)
        if self.loss_scaler is not None:
            grads = self.loss_scaler.unscale(grads)
            finite = self.all_finite(grads)
            self.loss_scaler.adjust(finite)
        else:  # without a scaler too, a non-finite loss or gradient (divergence, bad data) skips the update
            finite = self.all_finite((loss.astype(ms.float32),) + tuple(grads))
        if finite:
            loss = ops.depend(loss, self._update(grads))
        elif self.buffers:
            loss = ops.depend(loss, self._copy(self.buffers, self.buffer_backup))
        correct = ops.sum((ops.argmax(logits, -1) == ops.argmax(labels, -1)).astype(ms.int32))
        return loss, correct, finite.astype(ms.int32)

    def _copy(self, destinations, sources):
        if self.copy_all is None:
            return self.hyper_map(self.assign, destinations, sources)
        return self.copy_all(*destinations, *sources)

    def _update(self, grads):
        if self.clip_grad_norm > 0:
            grads = ops.clip_by_global_norm(grads, self.clip_grad_norm)
        updated = self.optimizer(grads)
        if self.ema is not None:
            updated = ops.depend(self.ema(), updated)
        return updated
