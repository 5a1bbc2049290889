"""Run by tests/test_distributed.py, alone or under `mpirun -n N`: train.py's main on a config, then a dump of
what each rank ended with, for the test to compare.

    python tests/distributed_worker.py CONFIG OUT_DIR [--fail kill|raise|stall] [--resume auto]

Writes OUT_DIR/rank<r>.npz (the final weights) and OUT_DIR/rank<r>.json: the sample indices of every training
batch this rank drew and of its validation shard (read back from the tag pixels of tests/data_fixtures.py), and
the validation report of the final weights (`evaluate` over this rank's shard, summed across ranks).
`--fail kill` SIGKILLs the last rank, `--fail raise` raises on it, `--fail stall` makes it pause for STALL_S
seconds (for the test to kill its host or cut its link meanwhile) and go on, when its second epoch starts, while the other ranks go on into the next step's
gradient all-reduce; it first writes the time to OUT_DIR/failed_at. `--resume auto` is passed to train.py.
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (first: selects the CPU kernels before mindspore loads)
import numpy as np  # noqa: E402

import tests.engine_fixtures  # noqa: E402,F401  (registers the test models)
import train  # noqa: E402
from src.engine.evaluate import evaluate  # noqa: E402
from src.engine.trainer import Trainer  # noqa: E402

STALL_S = 10


def _tags(images, info) -> list:
    """Sample indices of a normalised batch: pixel (0, 0) + 256 x pixel (0, 1) of the first channel."""
    pixels = np.rint((images.asnumpy()[:, 0, 0, :2] * info.std[0] + info.mean[0]) * 255).astype(int)
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


class _RecordingStep:
    """Wraps the train step: notes the sample indices of every batch."""

    def __init__(self, step, info, batches):
        self.step, self.info, self.batches = step, info, batches

    def set_train(self, mode=True):
        return self.step.set_train(mode)

    def __call__(self, images, *rest):
        self.batches.append(_tags(images, self.info))
        return self.step(images, *rest)


def main():
    config, out_dir, options = sys.argv[1], sys.argv[2], dict(zip(sys.argv[3::2], sys.argv[4::2]))
    fail = options.get("--fail")
    kept, batches = {}, []
    fit, train_epoch = Trainer.fit, Trainer._train_epoch

    def recording_fit(self):
        kept["trainer"] = self
        self.train_step = _RecordingStep(self.train_step, self.train_data.info, batches)
        fit(self)

    def failing_train_epoch(self, epoch):
        if fail and epoch == 1 and self.dist.rank == self.dist.world_size - 1:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "failed_at"), "w", encoding="utf-8") as f:
                f.write(repr(time.time()))
            if fail == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fail == "stall":
                time.sleep(STALL_S)
                return train_epoch(self, epoch)
            raise RuntimeError(f"injected failure on rank {self.dist.rank}")
        return train_epoch(self, epoch)

    Trainer.fit, Trainer._train_epoch = recording_fit, failing_train_epoch
    train.main(["--config", config] + (["--resume", options["--resume"]] if "--resume" in options else []))

    trainer = kept["trainer"]
    rank, world_size = trainer.dist.rank, trainer.dist.world_size
    val_samples = [i for images, _ in trainer.val_data.create_tuple_iterator(num_epochs=1)
                   for i in _tags(images, trainer.train_data.info)]
    report = evaluate(trainer.network, trainer.val_data, trainer.train_data.info.num_classes,
                      across_ranks=world_size > 1)
    os.makedirs(out_dir, exist_ok=True)
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"),
             **{p.name: p.asnumpy() for p in trainer.network.get_parameters()})
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w", encoding="utf-8") as f:
        json.dump({"world_size": world_size, "batches": batches, "val_samples": val_samples, "report": report}, f)


if __name__ == "__main__":
    main()
