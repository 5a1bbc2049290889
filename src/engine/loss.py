"""Cross-entropy on soft targets, with label smoothing applied to whatever target the data pipeline produced.

Training labels are float32 (batch, classes) distributions (one-hot, or mixed by mixup/cutmix), so smoothing is
a blend with the uniform distribution rather than a property of an integer label.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops


class SoftTargetCrossEntropy(nn.Cell):
    """mean over the batch of -sum(target' * log_softmax(logits)), target' = (1 - s) * target + s / classes."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def construct(self, logits, target):
        logits = logits.astype(ms.float32)  # AMP O2/O3 hands back float16 logits; the softmax stays in float32
        if self.label_smoothing > 0:
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / logits.shape[-1]
        return ops.mean(ops.sum(-target * ops.log_softmax(logits, -1), -1))
