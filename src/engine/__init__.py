"""Training engine: loss, optimizers, LR schedules, EMA, the compiled train step, checkpoints, evaluation,
metrics history and the epoch loop. `train.py` and `validate.py` assemble these; nothing here parses arguments.
"""
