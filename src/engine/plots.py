"""Loss and accuracy curves of a run, and an evaluation's confusion matrix, as PNG files (matplotlib, no display
needed)."""
import os

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from src.atomic_files import replace_atomic  # noqa: E402


def _plot(path, title, ylabel, series):
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, xs, ys, style in series:
        points = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    replace_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def plot_curves(history, directory: str) -> list:
    """loss_curve.png and accuracy_curve.png: per-interval training figures as thin lines, per-epoch
    training and validation figures as markers. Returns the paths written."""
    steps, epochs = history.steps, history.epochs
    step_x = [s["epoch"] for s in steps]
    epoch_x = [r["epoch"] for r in epochs]
    loss = _plot(os.path.join(directory, "loss_curve.png"), "Loss", "cross-entropy (training: label-smoothed)", [
        ("train (interval)", step_x, [s["loss"] for s in steps], "-"),
        ("train (epoch)", epoch_x, [r["train_loss"] for r in epochs], "o-"),
        ("validation", epoch_x, [r["val_loss"] for r in epochs], "s-"),
    ])
    acc = _plot(os.path.join(directory, "accuracy_curve.png"), "Accuracy", "accuracy (%)", [
        ("train (interval)", step_x, [100 * s["acc"] for s in steps], "-"),
        ("train (epoch)", epoch_x, [100 * r["train_acc"] for r in epochs], "o-"),
        ("validation top-1", epoch_x, [None if r["val_top1"] is None else 100 * r["val_top1"] for r in epochs], "s-"),
    ])
    return [loss, acc]


ANNOTATE_MAX_CLASSES = 20  # counts written in the cells up to this many classes
LABEL_MAX_CLASSES = 50  # class names on the axes up to this many; indices beyond


def plot_confusion_matrix(report: dict, path: str) -> str:
    """The confusion matrix of a validate.py report as a heat map of each true class's row normalised to 1 (so a
    rare class is as readable as a common one), with the raw counts in the cells for up to 20 classes."""
    matrix = np.asarray(report["confusion_matrix"], dtype=np.int64)
    names = report["class_names"]
    rows = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(names)
    side = min(4 + 0.45 * n, 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), dpi=110)
    image = ax.imshow(matrix / rows, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= LABEL_MAX_CLASSES:
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), names)
    if n <= ANNOTATE_MAX_CLASSES:
        for i in range(n):
            for j in range(n):
                share = matrix[i, j] / rows[i, 0]
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{report.get('model', '')} on {report.get('dataset', '')} ({report.get('split', '')}): "
                 f"top-1 {100 * report['top1']:.2f}%")
    fig.tight_layout()
    replace_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path
