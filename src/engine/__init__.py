"""Training engine: loss, optimizers, LR schedules, EMA, the compiled train step, the run's state on disk,
evaluation and the epoch loop. What train.py and validate.py use is imported here; nothing parses arguments."""
from src.engine.distill import build_teacher
from src.engine.ema import ModelEMA
from src.engine.epoch_data import EpochData
from src.engine.evaluate import evaluate
from src.engine.interrupt import TrainingInterrupted
from src.engine.loss import DistillationLoss, SoftTargetCrossEntropy
from src.engine.lr_schedule import build_lr_schedule
from src.engine.metrics import format_report
from src.engine.nonfinite import NonFiniteLossError
from src.engine.optim import create_optimizer
from src.engine.plots import plot_confusion_matrix
from src.engine.run_state import RunCheckpoints, TrainingState
from src.engine.train_step import (TrainStep, create_loss_scaler, gradient_reducer, loss_scaler_state,
                                   mixed_precision)
from src.engine.trainer import Trainer

__all__ = ["DistillationLoss", "EpochData", "ModelEMA", "NonFiniteLossError", "RunCheckpoints",
           "SoftTargetCrossEntropy", "Trainer", "TrainingInterrupted", "TrainingState", "TrainStep",
           "build_lr_schedule", "build_teacher", "create_loss_scaler", "create_optimizer", "evaluate",
           "format_report", "gradient_reducer", "loss_scaler_state", "mixed_precision", "plot_confusion_matrix"]
