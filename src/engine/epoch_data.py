"""Training batches epoch by epoch, from a pipeline seeded with (seed, epoch).

A MindSpore pipeline's shuffle and augmentation state lives inside the running pipeline and cannot be saved.
Rebuilding the pipeline for every epoch with seed `cfg.seed + epoch` makes each epoch's order and augmentation
a function of (seed, epoch) alone, so a run resumed at epoch k draws exactly what an uninterrupted run would.
The split itself is read once per run (an image folder's files listed once, not every epoch by every rank): each
epoch's pipeline shuffles that same list.
"""
import dataclasses

from src.data import create_dataset, read_split


class EpochData:
    """`for epoch ...: for images, labels in data.epoch(epoch).create_tuple_iterator(num_epochs=1)`."""

    def __init__(self, cfg, dist):
        self.cfg = cfg
        self.dist = dist
        self._epoch = 0
        self._split = read_split(cfg, cfg.train_split, training=True)
        # Epoch 0 is built now: its DatasetInfo and length size the model and the LR schedule.
        self._dataset, self.info = self._build(0)
        self.steps_per_epoch = self._dataset.get_dataset_size()
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)

    def _build(self, epoch):
        seeded = dataclasses.replace(self.cfg, seed=self.cfg.seed + epoch)
        return create_dataset(seeded, self.cfg.train_split, training=True, num_shards=self.dist.world_size,
                              shard_id=self.dist.rank, data=self._split)

    def epoch(self, epoch: int):
        if epoch != self._epoch:
            self._dataset, _ = self._build(epoch)
            self._epoch = epoch
        return self._dataset
