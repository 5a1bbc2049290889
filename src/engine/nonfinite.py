"""What the epoch loop does about steps whose loss or gradients are not finite.

TrainStep already made such a step change no weight; a few in a row are tolerated (a rare bad batch, a loss-scale
overflow), a longer streak means the run has diverged, and going on would only burn time. While a streak lasts no
checkpoint is written, so best.ckpt and the newest checkpoint stay the last good ones.
"""
import math


class NonFiniteLossError(FloatingPointError):
    """`max_nonfinite_steps` consecutive steps had a non-finite loss or gradients; the message says where and what
    to try."""


class NonFiniteStreak:
    """Counts consecutive non-finite steps, printing each; `cfg.max_nonfinite_steps` of them in a row raise
    NonFiniteLossError, which names the newest of the run's `checkpoints` (RunCheckpoints) to resume from."""

    def __init__(self, cfg, steps_per_epoch: int, checkpoints, log):
        self.limit = cfg.max_nonfinite_steps
        self.lr = cfg.lr  # named in the error's advice
        self.steps_per_epoch = steps_per_epoch
        self.checkpoints = checkpoints
        self.log = log
        self.length = 0

    def end(self):
        """A finite step ends the streak."""
        self.length = 0

    def extend(self, loss: float, epoch: int, step: int):
        """One more non-finite step (0-based `epoch`, `step`); NonFiniteLossError once the streak reaches the
        limit."""
        self.length += 1
        where = f"epoch {epoch + 1} step {step + 1}/{self.steps_per_epoch}"
        what = f"loss is {loss}" if not math.isfinite(loss) else f"gradients not finite (loss {loss:.4f})"
        self.log(f"{where}: {what}, the weights were not updated ({self.length} such step(s) in a row, the run "
                 f"stops at {self.limit})")
        if self.length >= self.limit:
            raise NonFiniteLossError(
                f"training stopped: the loss or its gradients were not finite ({what}) for {self.length} "
                f"consecutive steps, the last at {where}. Those steps did not update the weights and no checkpoint "
                f"was written after them; the newest good one is {self.checkpoints.describe_newest()}. Try a lower "
                f"lr (now {self.lr}), a longer warmup_epochs, clip_grad_norm (e.g. 1.0), checking the data for "
                f"NaN/inf, or with amp_level O1-O3 loss_scale dynamic; then --resume auto")
