"""The epoch loop: training with progress lines, validation (on the EMA weights when kept), checkpoints, metrics
history and resuming; signals, resume search, progress, non-finite losses and cadence are the small modules beside it.

A resumed run ends with an uninterrupted one's weights (state restored, data order from (seed, epoch)), except for
random state MindSpore cannot save: dropout masks on CPU and random erasing with num_workers > 1.
The steps' values stay on the device until the loop reads them (step_values.py, cadence.py), so a non-finite
streak stops the run at the next read: a progress line, a checkpoint or the epoch's end.
"""
import contextlib
import json
import math
import time

from src.atomic_files import WriteError
from src.checkpoint import CLASS_NAMES
from src.distributed.buffers import moving_statistics, rank_averager
from src.engine.cadence import Cadence
from src.engine.run_state import RunCheckpoints
from src.engine.evaluate import evaluate
from src.engine.history import MetricsHistory
from src.engine.interrupt import DeferredSignals
from src.engine.nonfinite import NonFiniteStreak
from src.engine.plots import plot_curves
from src.engine.progress import EpochProgress, ProgressReport, ProgressWindow
from src.engine.resume import resume
from src.engine.step_values import PendingSteps


class Trainer:
    """Runs `cfg.epochs` epochs of `train_step` over `train_data` (EpochData), validating `network` on
    `val_data`; `state` (TrainingState) is what the per-epoch checkpoints save and `--resume` restores.
    With a `teacher` (distill.py), its logits on each batch are the train step's third input."""

    def __init__(self, cfg, dist, network, train_step, train_data, val_data, lr_schedule, state, ema=None,
                 teacher=None):
        self.cfg = cfg
        self.dist = dist
        self.network = network
        self.train_step = train_step
        self.train_data = train_data
        self.val_data = val_data
        self.lr_schedule = lr_schedule
        self.state = state
        self.ema = ema
        self.teacher = teacher
        steps = train_data.steps_per_epoch
        self.images_per_step = cfg.batch_size * dist.world_size
        self.checkpoints = RunCheckpoints(cfg.output_dir, cfg.keep_checkpoints)
        self.history = MetricsHistory(cfg.output_dir)
        self.cadence = Cadence(cfg, steps)
        self.report = ProgressReport(cfg.epochs, steps, cfg.batch_size, self.images_per_step)
        self.nonfinite = NonFiniteStreak(cfg, steps, self.checkpoints, self.log)
        self.signals = DeferredSignals()
        # in every checkpoint: the model, and the classes its outputs stand for (validate.py and predict.py read it)
        self.run_meta = {"model": cfg.model, CLASS_NAMES: json.dumps(list(train_data.info.class_names))}
        self.best_top1 = -1.0
        self.compiled = False
        self._next_epoch = EpochProgress()  # where the next epoch trained starts: mid-epoch after a resume
        self._average_statistics = None  # multi-device: the cell that averages BN statistics across ranks

    def log(self, message: str):
        if self.dist.is_main:
            print(message, flush=True)

    def fit(self):
        """Train from scratch, or from `cfg.resume`, up to `cfg.epochs`; then draw the curves."""
        start_epoch = self._resume() if self.cfg.resume else 0
        try:
            with self.signals:
                for epoch in range(start_epoch, self.cfg.epochs):
                    row = self._train_epoch(epoch)
                    if self.cadence.validation(epoch):
                        row.update(self._validate())
                    self._end_epoch(epoch, row)
            if self.dist.is_main and self.history.epochs:
                self.log(f"curves: {', '.join(plot_curves(self.history, self.cfg.output_dir))}")
        except WriteError as err:  # the disk refused a file: say where the run can continue from
            raise err.noting(f"the newest complete checkpoint is {self.checkpoints.describe_newest()} (continue "
                             f"with --resume auto once {'there is space' if err.no_space else 'it can be written'})")
        if self.best_top1 >= 0:
            self.log(f"best validation top-1 {100 * self.best_top1:.2f}%: {self.checkpoints.best_path}")

    def _resume(self) -> int:
        """Restore `cfg.resume` -> the epoch to start; a mid-epoch checkpoint also says where in it to start."""
        resumed = resume(self.cfg.resume, self.state, self.checkpoints, self.train_data.steps_per_epoch)
        if resumed is None:
            self.log(f"resume auto: no checkpoint in {self.cfg.output_dir}, starting from scratch")
            return 0
        steps, done = self.train_data.steps_per_epoch, resumed.progress.batches_done
        self.best_top1 = resumed.best_top1
        self.history = MetricsHistory.resume(self.cfg.output_dir, resumed.epoch + done / steps)
        self._next_epoch = resumed.progress
        self.log(f"resumed from {resumed.path}: {resumed.epoch} of {self.cfg.epochs} epochs done"
                 + (f", {done} of {steps} steps into epoch {resumed.epoch + 1}" if done else ""))
        return resumed.epoch

    def _train_epoch(self, epoch: int) -> dict:
        """Train `epoch` (from where a mid-epoch checkpoint left it) -> its row of the metrics history."""
        steps = self.train_data.steps_per_epoch
        self.train_step.set_train(True)
        progress, self._next_epoch = self._next_epoch, EpochProgress()
        first = progress.batches_done
        window = ProgressWindow()
        started = time.perf_counter()
        if not self.compiled:
            self.log(f"{steps} steps of {self.images_per_step} images per epoch"
                     f"{'; the first step compiles the training graph' if self.cfg.mode == 'graph' else ''}")
        pending = PendingSteps()
        for step, (images, labels) in zip(range(first, steps), self._batches(epoch, first)):
            if self.signals.received is not None:
                self._read_steps(pending, epoch, progress, window)
                self._interrupt(epoch, progress, started)
            pending.add(step, self._step(images, labels), timed=self.compiled)
            progress.batches_done += 1
            if not self.compiled:
                self._read_steps(pending, epoch, progress, window)  # waits for the step: its time is the compile's
                self.log(f"first step took {time.perf_counter() - started:.1f} s")
                self.compiled = True
                window.start = time.perf_counter()
            if self.cadence.read_steps(epoch, step):
                self._read_steps(pending, epoch, progress, window)
            if self.cadence.progress_line(step):
                self._report_progress(epoch, step, window)
                window = ProgressWindow()
            if self.cadence.step_checkpoint(epoch, step) and not self.nonfinite.length and self.dist.is_main:
                self.log(f"saved {self._save_progress(epoch, progress, started)}")
        if self.signals.received is not None:  # arrived during the last step: validation and the epoch's end to do
            self._interrupt(epoch, progress, started)
        if (first < steps and self.cadence.validation(epoch) and not self.cadence.step_checkpoint(epoch, steps - 1)
                and not self.nonfinite.length and self.dist.is_main):
            self._save_progress(epoch, progress, started)  # a failure in validation must not cost the epoch's training
        seconds = max(time.perf_counter() - started, 1e-9)
        return {"epoch": epoch + 1, "lr": float(self.lr_schedule[(epoch + 1) * steps - 1]),
                **progress.figures(self.cfg.batch_size), "train_time_s": progress.seconds + seconds,
                "images_per_s": (steps - first) * self.images_per_step / seconds}

    def _batches(self, epoch: int, first: int):
        """The epoch's batches after the `first` ones, which are drawn and discarded so that the rest of a resumed
        epoch gets the augmentation draws it had."""
        batches = self.train_data.epoch(epoch).create_tuple_iterator(num_epochs=1)
        if 0 < first < self.train_data.steps_per_epoch:
            for _ in range(first):
                next(batches)
            self.log(f"skipped the {first} batches of epoch {epoch + 1} done before the checkpoint")
        return batches

    def _step(self, images, labels):
        """One training step -> its (loss, correct, updated) on the device; a step that is not finite updated no
        weight."""
        teacher_logits = () if self.teacher is None else (self.teacher(images),)
        outputs = self.train_step(images, labels, *teacher_logits)
        self.signals.retake()
        return outputs

    def _read_steps(self, pending: PendingSteps, epoch: int, progress: EpochProgress, window: ProgressWindow):
        """Add the steps not read yet to the epoch's figures and the window, in step order; a streak of non-finite
        steps that reached `max_nonfinite_steps` raises here."""
        for values in pending.read():
            window.add(values.loss if values.finite else math.nan, values.correct, timed=values.timed)
            if values.finite:
                self.nonfinite.end()
                progress.add(values.loss, values.correct)
            else:
                self.nonfinite.extend(values.loss, epoch, values.step)

    def _report_progress(self, epoch: int, step: int, window: ProgressWindow):
        """Print the progress line; the window's figures also go into the metrics history."""
        steps = self.train_data.steps_per_epoch
        lr = float(self.lr_schedule[epoch * steps + step])
        if window.steps:
            accuracy = window.accuracy(self.cfg.batch_size)
            self.history.add_step(epoch + (step + 1) / steps, window.mean_loss, accuracy, lr)
        self.log(self.report.step_line(epoch, step, window, lr))

    def _interrupt(self, epoch: int, progress: EpochProgress, started: float):
        """Save the state where `epoch` stands (between epochs when none of it is done) and raise
        TrainingInterrupted; `started`: when this process took the epoch up."""
        if self.nonfinite.length:
            saved = (f"nothing saved: the last {self.nonfinite.length} step(s) had a non-finite loss; the newest "
                     f"good checkpoint is {self.checkpoints.describe_newest()}")
        elif self.dist.is_main:
            saved = f"saved {self._save_progress(epoch, progress, started)}"
        else:
            saved = "the main process saved the state"
        where = f"epoch {epoch + 1}, {progress.batches_done} of {self.train_data.steps_per_epoch} steps done"
        raise self.signals.stop(where, saved)

    def _save_progress(self, epoch: int, progress: EpochProgress, started: float) -> str:
        """Write the training state `progress.batches_done` batches into `epoch` (an epoch checkpoint when 0) and the
        metrics so far -> the checkpoint's path."""
        meta = {"best_top1": self.best_top1, **self.run_meta}
        if progress.batches_done == 0:
            path = self.checkpoints.save_epoch(self.state, epoch, **meta)
        else:
            path = self.checkpoints.save_step(self.state, epoch, progress.batches_done,
                                              **progress.checkpoint_meta(time.perf_counter() - started), **meta)
        self.history.save()
        return path

    def _validate(self) -> dict:
        """Validation figures of the network (the EMA weights when kept) on the whole validation set."""
        start = time.perf_counter()
        across_ranks = self.dist.world_size > 1  # val_data is this rank's shard; the figures are the whole set's
        if across_ranks:
            self._average_statistics_across_ranks()
        with self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext():
            report = evaluate(self.network, self.val_data, self.train_data.info.num_classes, across_ranks=across_ranks)
        return {"val_loss": report["loss"], "val_top1": report["top1"], "val_top5": report["top5"],
                "val_time_s": time.perf_counter() - start}

    def _average_statistics_across_ranks(self):
        """One model on every rank: average the BN statistics each rank gathered on its batches."""
        if self._average_statistics is None:
            self._average_statistics = rank_averager(moving_statistics(self.network, self.ema), self.dist.world_size)
        self._average_statistics()

    def _end_epoch(self, epoch: int, row: dict):
        """Print the epoch's line; the main process records it and saves best.ckpt and the epoch checkpoint."""
        improved = row.get("val_top1") is not None and row["val_top1"] > self.best_top1
        if improved:
            self.best_top1 = row["val_top1"]
        self.log(self.report.epoch_line(row, ema=self.ema is not None, best=improved))
        if not self.dist.is_main:
            return
        self.history.add_epoch(row)
        if improved:
            weights = self.ema.averaged_weights() if self.ema is not None else {
                p.name: p for p in self.network.get_parameters()}
            self.checkpoints.save_best(weights, epoch=epoch + 1, val_top1=self.best_top1, **self.run_meta)
        if self.cadence.epoch_checkpoint(epoch):
            path = self.checkpoints.save_epoch(self.state, epoch + 1, best_top1=self.best_top1, **self.run_meta)
            self.checkpoints.drop_step(epoch, self.train_data.steps_per_epoch)  # the same state, before validation
            self.log(f"saved {path}")
