"""How far an epoch has got, and the lines that report it.

`EpochProgress` is what a mid-epoch checkpoint records and a resumed epoch starts from, so that the resumed
epoch's figures are those of the whole epoch. `ProgressWindow` gathers the steps since the last progress line;
`ProgressReport` formats the lines the epoch loop prints (scripts read metrics.json, not these lines).
"""
import dataclasses
import math
import time


@dataclasses.dataclass
class EpochProgress:
    """An epoch's running figures. A step checkpoint's metadata holds them (`batches_done` is its `epoch_step`, the
    rest `epoch_*` keys); the loss and accuracy are sums over the steps with a finite loss."""

    batches_done: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    finite_steps: int = 0
    seconds: float = 0.0  # the epoch's training time in the processes before this one (a resumed epoch's part)

    @classmethod
    def from_meta(cls, meta: dict) -> "EpochProgress":
        """From a training checkpoint's metadata; an epoch checkpoint (no `epoch_step`) starts the next epoch."""
        done = meta.get("epoch_step", 0)
        if not done:
            return cls()
        return cls(done, meta.get("epoch_loss_sum", 0.0), meta.get("epoch_correct", 0),
                   meta.get("epoch_counted", done), meta.get("epoch_seconds", 0.0))

    def checkpoint_meta(self, seconds_here: float) -> dict:
        """The `epoch_*` metadata of a checkpoint taken now, `seconds_here` into this process's part of the epoch."""
        return {"epoch_loss_sum": self.loss_sum, "epoch_correct": self.correct, "epoch_counted": self.finite_steps,
                "epoch_seconds": self.seconds + seconds_here}

    def add(self, loss: float, correct: int):
        """A step with a finite loss."""
        self.loss_sum += loss
        self.correct += correct
        self.finite_steps += 1

    def figures(self, batch_size: int) -> dict:
        """The epoch's training loss and accuracy, means over its finite steps."""
        counted = max(self.finite_steps, 1)
        return {"train_loss": self.loss_sum / counted, "train_acc": self.correct / (counted * batch_size)}


class ProgressWindow:
    """Training figures since the last progress line; the timer excludes the run's first (compiling) step."""

    def __init__(self):
        self.loss = 0.0
        self.correct = 0
        self.steps = 0  # steps with a finite loss: the averages are over these
        self.skipped = 0  # steps with a non-finite loss (no update)
        self.timed_steps = 0
        self.start = time.perf_counter()

    def add(self, loss: float, correct: int, timed: bool):
        self.timed_steps += timed
        if not math.isfinite(loss):
            self.skipped += 1
            return
        self.loss += loss
        self.correct += correct
        self.steps += 1

    @property
    def mean_loss(self) -> float:
        return self.loss / self.steps

    def accuracy(self, batch_size: int) -> float:
        return self.correct / (self.steps * batch_size)


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressReport:
    """The lines the epoch loop prints: every `log_interval` steps a window's figures, speed and time left; at an
    epoch's end its training and validation figures."""

    def __init__(self, epochs: int, steps_per_epoch: int, batch_size: int, images_per_step: int):
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.batch_size = batch_size
        self.images_per_step = images_per_step

    def step_line(self, epoch: int, step: int, window: ProgressWindow, lr: float) -> str:
        """After 0-based `step` of `epoch`; the time left assumes the window's speed for the rest of the run."""
        where = f"epoch {epoch + 1}/{self.epochs}  step {step + 1}/{self.steps}"
        if window.steps == 0:
            return f"{where}  no finite loss since the last line ({window.skipped} step(s) skipped)  lr {lr:.3e}"
        line = f"{where}  loss {window.mean_loss:.4f}  acc {100 * window.accuracy(self.batch_size):.2f}%  lr {lr:.3e}"
        if window.skipped:
            line += f"  ({window.skipped} non-finite step(s) skipped)"
        if window.timed_steps:
            seconds_per_step = (time.perf_counter() - window.start) / window.timed_steps
            left_in_epoch = self.steps - step - 1
            left_in_run = left_in_epoch + (self.epochs - epoch - 1) * self.steps
            line += (f"  {self.images_per_step / seconds_per_step:.1f} img/s  "
                     f"left: epoch {clock(left_in_epoch * seconds_per_step)}, "
                     f"run {clock(left_in_run * seconds_per_step)}")
        return line

    def epoch_line(self, row: dict, ema: bool, best: bool) -> str:
        """`row` is the epoch's metrics-history row; validation figures when it has them, `(EMA)` when they are the
        EMA weights', `*best*` when they are the best so far."""
        line = (f"epoch {row['epoch']}/{self.epochs} done: train loss {row['train_loss']:.4f} "
                f"acc {100 * row['train_acc']:.2f}% ({row['train_time_s']:.0f} s, {row['images_per_s']:.1f} img/s)")
        if "val_top1" in row:
            line += (f" | val{' (EMA)' if ema else ''} loss {row['val_loss']:.4f} "
                     f"top-1 {100 * row['val_top1']:.2f}% top-5 {100 * row['val_top5']:.2f}% "
                     f"({row['val_time_s']:.0f} s){' *best*' if best else ''}")
        return line
