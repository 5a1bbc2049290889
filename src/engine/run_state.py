"""A training run's state on disk: what a resumed run needs (`TrainingState`) and the run directory's files
(`RunCheckpoints`); the file format is src/checkpoint's."""
import glob
import os
import re

from src.checkpoint.files import (STATE_PREFIX, CheckpointError, assign_values, find_mismatch, mismatch_message,
                                  read_checkpoint, save_checkpoint)

_EPOCH_FILE = re.compile(r"epoch_(\d+)\.ckpt$")
_STEP_FILE = re.compile(r"epoch_(\d+)_step_(\d+)\.ckpt$")


class TrainingState:
    """Every tensor a resumed run needs, under its checkpoint key, so that save and restore are one mapping."""

    def __init__(self, network, optimizer, ema=None, loss_scaler_params=()):
        model = list(network.get_parameters())
        model_ids = {id(p) for p in model}
        self.tensors = {p.name: p for p in model}
        if ema is not None:
            self.tensors.update({p.name: p for p in ema.ema_params})  # already named ema.<name>
            self.tensors[STATE_PREFIX + "ema.num_updates"] = ema.num_updates
        # The LR array is rebuilt from the config; the step that indexes it is part of the state.
        self.tensors.update({f"{STATE_PREFIX}optimizer.{p.name}": p for p in optimizer.get_parameters()
                             if id(p) not in model_ids and p.name != "learning_rate"})
        self.tensors.update({f"{STATE_PREFIX}loss_scale.{p.name}": p for p in loss_scaler_params})

    def save(self, path: str, **meta):
        save_checkpoint(path, self.tensors, meta)

    def restore(self, path: str) -> dict:
        """Load everything or nothing: a checkpoint from another model, optimizer or EMA/loss-scale setting is an
        error naming the keys. Returns the metadata (epoch, best_top1). Call it before the first training step:
        host-side writes after the step is compiled may not reach the compiled graph (see ema.py)."""
        tensors, meta = read_checkpoint(path)
        missing, unexpected, shapes = find_mismatch(self.tensors, tensors)
        if missing or unexpected or shapes:
            raise CheckpointError(mismatch_message(path, "this run's training state", missing, unexpected, shapes,
                                                    meta))
        assign_values(self.tensors, tensors)
        return meta


class RunCheckpoints:
    """The checkpoint files of one run directory: per-epoch training states (rotated) and the best weights."""

    def __init__(self, directory: str, keep: int):
        self.directory = directory
        self.keep = keep

    @property
    def best_path(self):
        return os.path.join(self.directory, "best.ckpt")

    def epoch_paths(self) -> list:
        """Per-epoch checkpoints, oldest first."""
        found = [(int(m.group(1)), p) for p in glob.glob(os.path.join(self.directory, "epoch_*.ckpt"))
                 if (m := _EPOCH_FILE.search(p))]
        return [p for _, p in sorted(found)]

    def step_paths(self) -> list:
        """Mid-epoch checkpoints (periodic or written on a signal), oldest first."""
        found = [((int(m.group(1)), int(m.group(2))), p)
                 for p in glob.glob(os.path.join(self.directory, "epoch_*_step_*.ckpt"))
                 if (m := _STEP_FILE.search(p))]
        return [p for _, p in sorted(found)]

    def resumable(self) -> list:
        """Every training-state checkpoint, newest first: ordered by (epochs completed, batches into the next)."""
        progress = [((int(m.group(1)), 0), p) for p in self.epoch_paths() if (m := _EPOCH_FILE.search(p))]
        progress += [((int(m.group(1)), int(m.group(2))), p) for p in self.step_paths()
                     if (m := _STEP_FILE.search(p))]
        return [p for _, p in sorted(progress, reverse=True)]

    def describe_newest(self) -> str:
        """The checkpoint `--resume auto` would try first, as the messages of a stopped run name it."""
        paths = self.resumable()
        return paths[0] if paths else "none (no checkpoint written yet)"

    def latest(self):
        paths = self.epoch_paths()
        return paths[-1] if paths else None

    def save_epoch(self, state: TrainingState, epoch: int, **meta) -> str:
        """Write `epoch_NNNN.ckpt` (NNNN = epochs completed) and delete all but the newest `keep`."""
        path = os.path.join(self.directory, f"epoch_{epoch:04d}.ckpt")
        state.save(path, epoch=epoch, **meta)
        for old in self.epoch_paths()[:-self.keep]:
            os.remove(old)
        return path

    def save_step(self, state: TrainingState, epoch: int, epoch_step: int, **meta) -> str:
        """Write `epoch_NNNN_step_SSSS.ckpt`: NNNN epochs completed and SSSS batches of the next one consumed
        (meta `epoch`, `epoch_step`); delete all but the newest `keep` such files."""
        path = self._step_path(epoch, epoch_step)
        state.save(path, epoch=epoch, epoch_step=epoch_step, **meta)
        for old in self.step_paths()[:-self.keep]:
            os.remove(old)
        return path

    def drop_step(self, epoch: int, epoch_step: int):
        """Delete `epoch_NNNN_step_SSSS.ckpt` if there is one (superseded by a later checkpoint of the same state)."""
        path = self._step_path(epoch, epoch_step)
        if os.path.exists(path):
            os.remove(path)

    def _step_path(self, epoch: int, epoch_step: int) -> str:
        return os.path.join(self.directory, f"epoch_{epoch:04d}_step_{epoch_step:04d}.ckpt")

    def save_best(self, weights: dict, **meta):
        save_checkpoint(self.best_path, weights, meta)
