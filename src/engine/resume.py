"""Continuing a run: restoring the checkpoint `--resume` names (with "auto", the newest of the run directory that
restores) and where it leaves the run. The data order follows from (seed, epoch) (epoch_data.py), so the restored
state and the epoch to start from are all a resumed run needs."""
import dataclasses
import warnings

from src.checkpoint import CheckpointError
from src.engine.progress import EpochProgress


@dataclasses.dataclass
class Resumed:
    """Where a restored checkpoint leaves the run."""

    path: str
    epoch: int  # epochs completed
    best_top1: float  # -1.0 before any validation
    progress: EpochProgress  # of the next epoch: batches_done is 0 for a checkpoint written between epochs


def resume(source: str, state, checkpoints, steps_per_epoch: int):
    """Restore `source` (a path, or "auto") into `state` (TrainingState) -> Resumed; None when "auto" finds no
    checkpoint among `checkpoints` (RunCheckpoints). `steps_per_epoch` is this run's, to reject a mid-epoch
    checkpoint from longer epochs."""
    if source == "auto":
        path, meta = _restore_newest(state, checkpoints, steps_per_epoch)
        if path is None:
            return None
    else:
        path, meta = source, _restore(state, source, steps_per_epoch)
    return Resumed(path, meta["epoch"], meta.get("best_top1", -1.0), EpochProgress.from_meta(meta))


def _restore(state, path: str, steps_per_epoch: int) -> dict:
    meta = state.restore(path)
    if "epoch" not in meta:
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint (no epoch in its metadata); "
                              f"to start from its weights use --pretrained")
    if meta.get("epoch_step", 0) > steps_per_epoch:
        raise CheckpointError(f"checkpoint {path} was written {meta['epoch_step']} steps into an epoch, but "
                              f"this run's epochs have {steps_per_epoch} steps: batch_size, "
                              f"max_steps_per_epoch or the data changed since")
    return meta


def _restore_newest(state, checkpoints, steps_per_epoch: int):
    """-> (path, meta) of the newest checkpoint that restores, warning about each newer one that does not;
    (None, None) when there is none. restore() loads all or nothing, so a failed try changes nothing."""
    candidates, errors = checkpoints.resumable(), []
    for path in candidates:
        try:
            return path, _restore(state, path, steps_per_epoch)
        except CheckpointError as err:
            errors.append(str(err))
            warnings.warn(f"resume auto: skipping {path}: {err}", RuntimeWarning, stacklevel=3)
    if candidates:
        raise CheckpointError(f"resume auto: none of the {len(candidates)} checkpoints in {checkpoints.directory} "
                              f"can be restored:\n" + "\n".join(errors))
    return None, None
