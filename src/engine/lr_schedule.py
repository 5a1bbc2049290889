"""Per-step learning rates: linear warm-up, then cosine, step or exponential decay (or constant).

The whole schedule is one array handed to the optimizer, which indexes it with its own `global_step`; resuming
restores that step, so the LR continues where it stopped. Step and exponential decay count epochs from the
start of training (warm-up included) and never go below `min_lr`; cosine ends at `min_lr`.
"""
import numpy as np


def _cosine(cfg, step, epoch, warmup, total):
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + np.cos(np.pi * progress))


def _step(cfg, step, epoch, warmup, total):
    return np.maximum(cfg.min_lr, cfg.lr * cfg.decay_rate ** np.floor(epoch / cfg.decay_epochs))


def _exponential(cfg, step, epoch, warmup, total):
    return np.maximum(cfg.min_lr, cfg.lr * cfg.decay_rate ** (epoch / cfg.decay_epochs))


def _constant(cfg, step, epoch, warmup, total):
    return np.full_like(step, cfg.lr)


SCHEDULERS = {"cosine": _cosine, "step": _step, "exponential": _exponential, "constant": _constant}


def build_lr_schedule(cfg, steps_per_epoch: int) -> np.ndarray:
    """float32 array of length epochs * steps_per_epoch: the LR of every optimizer step of the run."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(total, int(round(cfg.warmup_epochs * steps_per_epoch)))
    step = np.arange(total, dtype=np.float64)
    rates = SCHEDULERS[cfg.scheduler](cfg, step, step / steps_per_epoch, warmup, total)
    rates[:warmup] = cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * step[:warmup] / warmup
    return rates.astype(np.float32)
