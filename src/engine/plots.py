"""Loss and accuracy curves of a run as PNG files (matplotlib, no display needed)."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    fig.savefig(path)
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
