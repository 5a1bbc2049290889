"""Checkpoints: this repo's files (files.py), other code's layouts (layouts.py), PyTorch files (torch_file.py) and
conversion to this repo's models (convert.py)."""
from src.checkpoint.files import (CLASS_NAMES, EMA_PREFIX, STATE_PREFIX, CheckpointError, checkpoint_class_names,
                                  load_pretrained, load_weights, model_weights, read_checkpoint, save_checkpoint)

__all__ = ["CLASS_NAMES", "EMA_PREFIX", "STATE_PREFIX", "CheckpointError", "checkpoint_class_names",
           "load_pretrained", "load_weights", "model_weights", "read_checkpoint", "save_checkpoint"]
