"""The metrics of a run, rewritten after every epoch: metrics.json (per epoch, plus the training loss and
accuracy of every logging interval) and metrics.csv (per epoch, for spreadsheets)."""
import csv
import json
import os

from src.atomic_files import write_atomic

EPOCH_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "train_time_s",
                 "val_time_s", "images_per_s")


class MetricsHistory:
    """`epochs`: one dict per epoch with EPOCH_COLUMNS (None where validation did not run);
    `steps`: {epoch (fractional), loss, acc, lr} per logging interval."""

    def __init__(self, directory: str, epochs=None, steps=None):
        self.directory = directory
        self.epochs = epochs or []
        self.steps = steps or []

    @classmethod
    def resume(cls, directory: str, completed_epochs: int) -> "MetricsHistory":
        """The history of the run being resumed, cut back to the epochs its checkpoint had completed."""
        path = os.path.join(directory, "metrics.json")
        if not os.path.isfile(path):
            return cls(directory)
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        return cls(directory, [r for r in saved["epochs"] if r["epoch"] <= completed_epochs],
                   [r for r in saved["steps"] if r["epoch"] <= completed_epochs])

    def add_step(self, epoch: float, loss: float, acc: float, lr: float):
        self.steps.append({"epoch": epoch, "loss": loss, "acc": acc, "lr": lr})

    def add_epoch(self, row: dict):
        self.epochs.append({key: row.get(key) for key in EPOCH_COLUMNS})
        self.save()

    def save(self):
        write_atomic(os.path.join(self.directory, "metrics.json"),
                     lambda f: json.dump({"epochs": self.epochs, "steps": self.steps}, f, indent=1))
        write_atomic(os.path.join(self.directory, "metrics.csv"), self._write_csv)

    def _write_csv(self, f):
        writer = csv.DictWriter(f, fieldnames=EPOCH_COLUMNS)
        writer.writeheader()
        writer.writerows(self.epochs)
