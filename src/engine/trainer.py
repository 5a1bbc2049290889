"""The epoch loop: training with progress lines, validation (on the EMA weights when kept), checkpoints,
metrics history, resuming and the final curves.

Resuming restores the weights, optimizer state (and with it the LR step), EMA, loss scale, epoch and best top-1,
and the data order follows from (seed, epoch) (epoch_data.py), so a resumed run ends with the weights of an
uninterrupted one. Exceptions, where MindSpore keeps random state that cannot be saved or seeded: dropout on CPU
(`nn.Dropout` draws from a per-kernel generator), so with drop_rate > 0 the masks after a resume differ; and
random erasing with num_workers > 1, which differs between two pipelines built with the same seed.
"""
import math
import time

from src.engine.checkpoint import RunCheckpoints
from src.engine.evaluate import evaluate
from src.engine.history import MetricsHistory
from src.engine.plots import plot_curves


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Window:
    """Training figures since the last progress line; the timer excludes the run's first (compiling) step."""

    def __init__(self):
        self.loss = 0.0
        self.correct = 0
        self.steps = 0
        self.timed_steps = 0
        self.start = time.perf_counter()

    def add(self, loss: float, correct: int, timed: bool):
        self.loss += loss
        self.correct += correct
        self.steps += 1
        self.timed_steps += timed


class Trainer:
    """Runs `cfg.epochs` epochs of `train_step` over `train_data` (EpochData), validating `network` on
    `val_data`; `state` (TrainingState) is what the per-epoch checkpoints save and `--resume` restores."""

    def __init__(self, cfg, dist, network, train_step, train_data, val_data, lr_schedule, state, ema=None):
        self.cfg = cfg
        self.dist = dist
        self.network = network
        self.train_step = train_step
        self.train_data = train_data
        self.val_data = val_data
        self.lr_schedule = lr_schedule
        self.state = state
        self.ema = ema
        self.checkpoints = RunCheckpoints(cfg.output_dir, cfg.keep_checkpoints)
        self.history = MetricsHistory(cfg.output_dir)
        self.best_top1 = -1.0
        self.compiled = False
        self.images_per_step = cfg.batch_size * dist.world_size

    def log(self, message: str):
        if self.dist.is_main:
            print(message, flush=True)

    def fit(self):
        start_epoch = self._resume() if self.cfg.resume else 0
        for epoch in range(start_epoch, self.cfg.epochs):
            row = self._train_epoch(epoch)
            if self._due(epoch, self.cfg.val_interval):
                row.update(self._validate())
            self._end_epoch(epoch, row)
        if self.dist.is_main and self.history.epochs:
            self.log(f"curves: {', '.join(plot_curves(self.history, self.cfg.output_dir))}")
        if self.best_top1 >= 0:
            self.log(f"best validation top-1 {100 * self.best_top1:.2f}%: {self.checkpoints.best_path}")

    def _due(self, epoch, interval):
        """Every `interval` epochs and at the last epoch; never when interval is 0."""
        return interval > 0 and ((epoch + 1) % interval == 0 or epoch + 1 == self.cfg.epochs)

    def _resume(self) -> int:
        path = self.checkpoints.latest() if self.cfg.resume == "auto" else self.cfg.resume
        if path is None:
            self.log(f"resume auto: no epoch_*.ckpt in {self.cfg.output_dir}, starting from scratch")
            return 0
        meta = self.state.restore(path)
        self.best_top1 = meta.get("best_top1", -1.0)
        self.history = MetricsHistory.resume(self.cfg.output_dir, meta["epoch"])
        self.log(f"resumed from {path}: {meta['epoch']} of {self.cfg.epochs} epochs done")
        return meta["epoch"]

    def _train_epoch(self, epoch: int) -> dict:
        steps = self.train_data.steps_per_epoch
        self.train_step.set_train(True)
        loss_sum, correct, window = 0.0, 0, _Window()
        epoch_start = time.perf_counter()
        if not self.compiled:
            self.log(f"{steps} steps of {self.images_per_step} images per epoch"
                     f"{'; the first step compiles the training graph' if self.cfg.mode == 'graph' else ''}")
        batches = self.train_data.epoch(epoch).create_tuple_iterator(num_epochs=1)
        for step, (images, labels) in zip(range(steps), batches):
            loss, batch_correct = self.train_step(images, labels)
            loss, batch_correct = float(loss.asnumpy()), int(batch_correct.asnumpy())
            if not math.isfinite(loss) and self.cfg.loss_scale == "none":
                raise FloatingPointError(f"loss is {loss} at epoch {epoch + 1} step {step + 1}: lower lr, set "
                                         f"clip_grad_norm, or use loss scaling with AMP")
            loss_sum, correct = loss_sum + loss, correct + batch_correct
            window.add(loss, batch_correct, timed=self.compiled)
            if not self.compiled:
                self.log(f"first step took {time.perf_counter() - epoch_start:.1f} s")
                self.compiled = True
                window.start = time.perf_counter()
            if (step + 1) % self.cfg.log_interval == 0 or step + 1 == steps:
                self._progress(epoch, step, window)
                window = _Window()
        seconds = time.perf_counter() - epoch_start
        return {"epoch": epoch + 1, "lr": float(self.lr_schedule[(epoch + 1) * steps - 1]),
                "train_loss": loss_sum / steps, "train_acc": correct / (steps * self.cfg.batch_size),
                "train_time_s": seconds, "images_per_s": steps * self.images_per_step / seconds}

    def _progress(self, epoch, step, window):
        steps = self.train_data.steps_per_epoch
        global_step = epoch * steps + step
        lr = float(self.lr_schedule[global_step])
        loss, acc = window.loss / window.steps, window.correct / (window.steps * self.cfg.batch_size)
        self.history.add_step(epoch + (step + 1) / steps, loss, acc, lr)
        line = (f"epoch {epoch + 1}/{self.cfg.epochs}  step {step + 1}/{steps}  loss {loss:.4f}  "
                f"acc {100 * acc:.2f}%  lr {lr:.3e}")
        if window.timed_steps:
            seconds_per_step = (time.perf_counter() - window.start) / window.timed_steps
            left_in_epoch = steps - step - 1
            left_in_run = left_in_epoch + (self.cfg.epochs - epoch - 1) * steps
            line += (f"  {self.images_per_step / seconds_per_step:.1f} img/s  "
                     f"eta {_clock(left_in_epoch * seconds_per_step)} (run {_clock(left_in_run * seconds_per_step)})")
        self.log(line)

    def _validate(self) -> dict:
        start = time.perf_counter()
        num_classes = self.train_data.info.num_classes
        if self.ema is None:
            report = evaluate(self.network, self.val_data, num_classes)
        else:
            with self.ema.swapped_in():
                report = evaluate(self.network, self.val_data, num_classes)
        return {"val_loss": report["loss"], "val_top1": report["top1"], "val_top5": report["top5"],
                "val_time_s": time.perf_counter() - start}

    def _end_epoch(self, epoch: int, row: dict):
        done = epoch + 1
        improved = row.get("val_top1") is not None and row["val_top1"] > self.best_top1
        if improved:
            self.best_top1 = row["val_top1"]
        line = (f"epoch {done}/{self.cfg.epochs} done: train loss {row['train_loss']:.4f} "
                f"acc {100 * row['train_acc']:.2f}% ({row['train_time_s']:.0f} s, {row['images_per_s']:.1f} img/s)")
        if "val_top1" in row:
            line += (f" | val{' (EMA)' if self.ema is not None else ''} loss {row['val_loss']:.4f} "
                     f"top-1 {100 * row['val_top1']:.2f}% top-5 {100 * row['val_top5']:.2f}% "
                     f"({row['val_time_s']:.0f} s){' *best*' if improved else ''}")
        self.log(line)
        if not self.dist.is_main:
            return
        self.history.add_epoch(row)
        if improved:
            weights = self.ema.averaged_weights() if self.ema is not None else {
                p.name: p for p in self.network.get_parameters()}
            self.checkpoints.save_best(weights, epoch=done, val_top1=self.best_top1, model=self.cfg.model)
        if self._due(epoch, self.cfg.ckpt_interval):
            path = self.checkpoints.save_epoch(self.state, done, best_top1=self.best_top1, model=self.cfg.model)
            self.log(f"saved {path}")
