"""Cross-entropy on soft targets, with label smoothing applied to whatever target the data pipeline produced.

Training labels are float32 (batch, classes) distributions (one-hot, or mixed by mixup/cutmix), so smoothing is
a blend with the uniform distribution rather than a property of an integer label. With a teacher (knowledge
distillation, train.py's teacher_* / kd_* keys), `DistillationLoss` adds the soft term on the teacher's logits.
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


class DistillationLoss(nn.Cell):
    """Knowledge distillation (Hinton et al., 2015): `loss(logits, target, teacher_logits)` is
    (1 - alpha) * SoftTargetCrossEntropy(logits, target) + alpha * T^2 * KL(p_teacher || p_student), where
    p = softmax(logits / T); the KL is summed over the classes and averaged over the batch. T^2 keeps the soft
    term's gradients at the scale of the hard term's whatever the temperature. The teacher's logits are constants:
    no gradient flows into them.
    """

    def __init__(self, label_smoothing: float = 0.0, temperature: float = 1.0, alpha: float = 0.5):
        super().__init__()
        self.cross_entropy = SoftTargetCrossEntropy(label_smoothing)
        self.temperature = temperature
        self.alpha = alpha

    def construct(self, logits, target, teacher_logits):
        hard = self.cross_entropy(logits, target)
        teacher_log_p = ops.log_softmax(ops.stop_gradient(teacher_logits).astype(ms.float32) / self.temperature, -1)
        student_log_p = ops.log_softmax(logits.astype(ms.float32) / self.temperature, -1)
        kl = ops.mean(ops.sum(ops.exp(teacher_log_p) * (teacher_log_p - student_log_p), -1))
        return (1.0 - self.alpha) * hard + self.alpha * self.temperature * self.temperature * kl
