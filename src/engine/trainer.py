"""The epoch loop: training with progress lines, validation (on the EMA weights when kept), checkpoints,
metrics history, resuming and the final curves.

Resuming restores the weights, optimizer state (and with it the LR step), EMA, loss scale, epoch and best top-1,
and the data order follows from (seed, epoch) (epoch_data.py), so a resumed run ends with the weights of an
uninterrupted one. Exceptions, where MindSpore keeps random state that cannot be saved or seeded: dropout on CPU
(`nn.Dropout` draws from a per-kernel generator), so with drop_rate > 0 the masks after a resume differ; and
random erasing with num_workers > 1, which differs between two pipelines built with the same seed.

Reliability (see README "What you can rely on"):
- SIGINT / SIGTERM: the step under way finishes, the training state is saved (`epoch_NNNN_step_SSSS.ckpt`, SSSS
  batches into epoch NNNN + 1; `epoch_NNNN.ckpt` between epochs) and `TrainingInterrupted` is raised; train.py
  exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM; MindSpore's runtime turns a SIGINT that
  lands inside a graph run into SIGTERM). A second signal stops at once (KeyboardInterrupt); checkpoint writes are
  atomic, so nothing on disk is left half-written.
- `ckpt_interval_steps` > 0 also saves such a mid-epoch checkpoint every that many steps, for runs that are killed
  without warning (SIGKILL, out of memory, power loss).
- Resuming mid-epoch rebuilds the epoch's pipeline from (seed, epoch) and skips the batches already consumed
  (they are drawn and discarded, so the augmentation draws stay in step).
- A step whose loss or gradients are not finite changes no weight (train_step.py); after `max_nonfinite_steps` of them
  in a row `NonFiniteLossError` stops the run. No checkpoint is written while such a streak lasts, so best.ckpt and
  the latest checkpoint stay the last good ones.
"""
import contextlib
import math
import signal
import threading
import time
import warnings

from src.checkpoint import CheckpointError
from src.distributed.buffers import moving_statistics, rank_averager
from src.engine.checkpoint import RunCheckpoints
from src.engine.evaluate import evaluate
from src.engine.history import MetricsHistory
from src.engine.plots import plot_curves


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM stopped the run after its state was saved; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLossError(FloatingPointError):
    """`max_nonfinite_steps` consecutive steps had a non-finite loss or gradients; the message says where and what
    to try."""


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Window:
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
        self.checkpoints = RunCheckpoints(cfg.output_dir, cfg.keep_checkpoints)
        self.history = MetricsHistory(cfg.output_dir)
        self.best_top1 = -1.0
        self.compiled = False
        self.images_per_step = cfg.batch_size * dist.world_size
        self._average_statistics = None  # multi-device: the cell that averages BN statistics across ranks
        self.nonfinite = 0  # consecutive steps with a non-finite loss
        self._signal = None  # SIGINT / SIGTERM received, handled after the step under way
        self._signals_taken = False  # inside fit(), in the main thread: our handler is the one to keep installed
        self._partial = {}  # epoch -> (batches consumed, loss sum, correct, finite steps, seconds) resumed mid-epoch

    def log(self, message: str):
        if self.dist.is_main:
            print(message, flush=True)

    def fit(self):
        start_epoch = self._resume() if self.cfg.resume else 0
        with self._deferred_signals():
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

    @contextlib.contextmanager
    def _deferred_signals(self):
        """While training, SIGINT / SIGTERM only set a flag that the step loop acts on (save, then stop); a second
        one raises KeyboardInterrupt at once. The previous handlers come back afterwards."""
        if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
            yield
            return
        previous = {s: signal.getsignal(s) for s in _SIGNALS}
        self._signals_taken = True
        self._take_signals()
        try:
            yield
        finally:
            self._signals_taken = False
            for s, h in previous.items():
                signal.signal(s, h)

    def _on_signal(self, signum, frame):
        if self._signal is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        self._signal = signum

    def _take_signals(self):
        """(Re)install the handler. Every graph run puts MindSpore's own C handler for SIGINT back, which turns it
        into SIGTERM; re-taking SIGINT after each step keeps a Ctrl-C between steps a SIGINT (exit 130), while one
        during a step arrives as SIGTERM (exit 143). Two sigaction calls: negligible next to a step."""
        if self._signals_taken:
            for s in _SIGNALS:
                signal.signal(s, self._on_signal)

    def _resume(self) -> int:
        """Restore `cfg.resume` (a path, or "auto": the newest checkpoint of output_dir that restores) -> the epoch
        to start; a mid-epoch checkpoint also sets the batches of that epoch to skip and its running sums."""
        if self.cfg.resume == "auto":
            path, meta = self._restore_newest()
            if path is None:
                self.log(f"resume auto: no checkpoint in {self.cfg.output_dir}, starting from scratch")
                return 0
        else:
            path, meta = self.cfg.resume, self._restore(self.cfg.resume)
        epoch, done = meta["epoch"], meta.get("epoch_step", 0)
        steps = self.train_data.steps_per_epoch
        self.best_top1 = meta.get("best_top1", -1.0)
        self.history = MetricsHistory.resume(self.cfg.output_dir, epoch + done / steps)
        if done:
            self._partial[epoch] = (done, meta.get("epoch_loss_sum", 0.0), meta.get("epoch_correct", 0),
                                    meta.get("epoch_counted", done), meta.get("epoch_seconds", 0.0))
        self.log(f"resumed from {path}: {epoch} of {self.cfg.epochs} epochs done"
                 + (f", {done} of {steps} steps into epoch {epoch + 1}" if done else ""))
        return epoch

    def _restore(self, path) -> dict:
        meta = self.state.restore(path)
        if "epoch" not in meta:
            raise CheckpointError(f"checkpoint {path} is not a training checkpoint (no epoch in its metadata); "
                                  f"to start from its weights use --pretrained")
        if meta.get("epoch_step", 0) > self.train_data.steps_per_epoch:
            raise CheckpointError(f"checkpoint {path} was written {meta['epoch_step']} steps into an epoch, but "
                                  f"this run's epochs have {self.train_data.steps_per_epoch} steps: batch_size, "
                                  f"max_steps_per_epoch or the data changed since")
        return meta

    def _restore_newest(self):
        """-> (path, meta) of the newest checkpoint that restores, warning about each newer one that does not;
        (None, None) when output_dir has none. restore() loads all or nothing, so a failed try changes nothing."""
        candidates, errors = self.checkpoints.resumable(), []
        for path in candidates:
            try:
                return path, self._restore(path)
            except CheckpointError as err:
                errors.append(str(err))
                warnings.warn(f"resume auto: skipping {path}: {err}", RuntimeWarning, stacklevel=2)
        if candidates:
            raise CheckpointError(f"resume auto: none of the {len(candidates)} checkpoints in {self.cfg.output_dir} "
                                  f"can be restored:\n" + "\n".join(errors))
        return None, None

    def _interrupt(self, epoch: int, done: int, sums: tuple):
        """Save the state `done` batches into `epoch` (between epochs when 0) and raise TrainingInterrupted."""
        name = signal.Signals(self._signal).name
        if self.nonfinite:
            saved = (f"nothing saved: the last {self.nonfinite} step(s) had a non-finite loss; the newest good "
                     f"checkpoint is {self._newest_checkpoint()}")
        elif self.dist.is_main:
            saved = f"saved {self._save_progress(epoch, done, sums)}"
        else:
            saved = "the main process saved the state"
        raise TrainingInterrupted(f"{name} received: stopped at epoch {epoch + 1}, {done} of "
                                  f"{self.train_data.steps_per_epoch} steps done; {saved}; continue with "
                                  f"--resume auto", 128 + self._signal)

    def _save_progress(self, epoch: int, done: int, sums: tuple) -> str:
        meta = {"best_top1": self.best_top1, "model": self.cfg.model}
        if done == 0:
            path = self.checkpoints.save_epoch(self.state, epoch, **meta)
        else:
            loss_sum, correct, counted, seconds = sums
            path = self.checkpoints.save_step(self.state, epoch, done, epoch_loss_sum=loss_sum, epoch_correct=correct,
                                              epoch_counted=counted, epoch_seconds=seconds, **meta)
        self.history.save()
        return path

    def _newest_checkpoint(self) -> str:
        paths = self.checkpoints.resumable()
        return paths[0] if paths else "none (no checkpoint written yet)"

    def _updated(self) -> bool:
        """Whether the last step updated the weights (TrainStep skips steps with non-finite loss or gradients)."""
        flag = getattr(self.train_step, "updated", None)
        return flag is None or bool(flag.asnumpy())

    def _nonfinite_step(self, loss: float, epoch: int, step: int):
        self.nonfinite += 1
        steps, limit = self.train_data.steps_per_epoch, self.cfg.max_nonfinite_steps
        what = f"loss is {loss}" if not math.isfinite(loss) else f"gradients not finite (loss {loss:.4f})"
        self.log(f"epoch {epoch + 1} step {step + 1}/{steps}: {what}, the weights were not updated "
                 f"({self.nonfinite} such step(s) in a row, the run stops at {limit})")
        if self.nonfinite >= limit:
            raise NonFiniteLossError(
                f"training stopped: the loss or its gradients were not finite ({what}) for {self.nonfinite} "
                f"consecutive steps, the "
                f"last at epoch {epoch + 1} step {step + 1}/{steps}. Those steps did not update the weights and no "
                f"checkpoint was written after them; the newest good one is {self._newest_checkpoint()}. Try a "
                f"lower lr (now {self.cfg.lr}), a longer warmup_epochs, clip_grad_norm (e.g. 1.0), checking the "
                f"data for NaN/inf, or with amp_level O1-O3 loss_scale dynamic; then --resume auto")

    def _train_epoch(self, epoch: int) -> dict:
        steps = self.train_data.steps_per_epoch
        self.train_step.set_train(True)
        first, loss_sum, correct, counted, seconds_before = self._partial.pop(epoch, (0, 0.0, 0, 0, 0.0))
        window = _Window()
        epoch_start = time.perf_counter()

        def sums():
            """What a checkpoint taken now hands on to the resumed epoch; its seconds so far count in its time."""
            return loss_sum, correct, counted, seconds_before + time.perf_counter() - epoch_start

        if not self.compiled:
            self.log(f"{steps} steps of {self.images_per_step} images per epoch"
                     f"{'; the first step compiles the training graph' if self.cfg.mode == 'graph' else ''}")
        batches = self.train_data.epoch(epoch).create_tuple_iterator(num_epochs=1)
        if 0 < first < steps:  # drawn and discarded: the rest of the epoch gets the augmentation draws it had
            for _ in range(first):
                next(batches)
            self.log(f"skipped the {first} batches of epoch {epoch + 1} done before the checkpoint")
        for step, (images, labels) in zip(range(first, steps), batches):
            if self._signal is not None:
                self._interrupt(epoch, step, sums())
            teacher_logits = () if self.teacher is None else (self.teacher(images),)
            loss, batch_correct = self.train_step(images, labels, *teacher_logits)
            loss, batch_correct = float(loss.asnumpy()), int(batch_correct.asnumpy())
            self._take_signals()
            finite = math.isfinite(loss) and self._updated()
            window.add(loss if finite else math.nan, batch_correct, timed=self.compiled)
            if finite:
                self.nonfinite = 0
                loss_sum, correct, counted = loss_sum + loss, correct + batch_correct, counted + 1
            else:
                self._nonfinite_step(loss, epoch, step)
            if not self.compiled:
                self.log(f"first step took {time.perf_counter() - epoch_start:.1f} s")
                self.compiled = True
                window.start = time.perf_counter()
            if (step + 1) % self.cfg.log_interval == 0 or step + 1 == steps:
                self._progress(epoch, step, window)
                window = _Window()
            if self._step_checkpoint_due(epoch, step) and self.dist.is_main:
                self.log(f"saved {self._save_progress(epoch, step + 1, sums())}")
        if self._signal is not None:  # arrived during the last step: validation and the epoch's end still to do
            self._interrupt(epoch, steps, sums())
        seconds = max(time.perf_counter() - epoch_start, 1e-9)
        counted = max(counted, 1)
        return {"epoch": epoch + 1, "lr": float(self.lr_schedule[(epoch + 1) * steps - 1]),
                "train_loss": loss_sum / counted, "train_acc": correct / (counted * self.cfg.batch_size),
                "train_time_s": seconds_before + seconds,
                "images_per_s": (steps - first) * self.images_per_step / seconds}

    def _step_checkpoint_due(self, epoch: int, step: int) -> bool:
        """Every `ckpt_interval_steps` steps of the run, except after a non-finite loss and where the epoch
        checkpoint follows anyway."""
        interval, steps = self.cfg.ckpt_interval_steps, self.train_data.steps_per_epoch
        if interval <= 0 or self.nonfinite or (epoch * steps + step + 1) % interval:
            return False
        return not (step + 1 == steps and self._due(epoch, self.cfg.ckpt_interval))

    def _progress(self, epoch, step, window):
        steps = self.train_data.steps_per_epoch
        global_step = epoch * steps + step
        lr = float(self.lr_schedule[global_step])
        if window.steps == 0:
            self.log(f"epoch {epoch + 1}/{self.cfg.epochs}  step {step + 1}/{steps}  no finite loss since the last "
                     f"line ({window.skipped} step(s) skipped)  lr {lr:.3e}")
            return
        loss, acc = window.loss / window.steps, window.correct / (window.steps * self.cfg.batch_size)
        self.history.add_step(epoch + (step + 1) / steps, loss, acc, lr)
        line = (f"epoch {epoch + 1}/{self.cfg.epochs}  step {step + 1}/{steps}  loss {loss:.4f}  "
                f"acc {100 * acc:.2f}%  lr {lr:.3e}")
        if window.skipped:
            line += f"  ({window.skipped} non-finite step(s) skipped)"
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
        across_ranks = self.dist.world_size > 1  # val_data is this rank's shard; the figures are the whole set's
        if across_ranks:  # one model on every rank: average the BN statistics each rank gathered on its batches
            if self._average_statistics is None:
                self._average_statistics = rank_averager(moving_statistics(self.network, self.ema),
                                                         self.dist.world_size)
            self._average_statistics()
        if self.ema is None:
            report = evaluate(self.network, self.val_data, num_classes, across_ranks=across_ranks)
        else:
            with self.ema.swapped_in():
                report = evaluate(self.network, self.val_data, num_classes, across_ranks=across_ranks)
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
