"""Knowledge distillation's teacher: a registered model with a checkpoint's weights, or an exported MINDIR / ONNX file.

It scores the student's batch in inference mode as its own graph before the train step, whose third input its
logits are: a loaded MINDIR (`nn.GraphCell`) cannot be called from another compiled cell, and so the teacher costs
no gradients and is in no optimizer or checkpoint.
"""
import dataclasses

import numpy as np
import mindspore as ms

from src.checkpoint import load_weights, model_weights, read_checkpoint
from src.config import ConfigError
from src.deploy import ExportedModelError, load_exported
from src.engine.train_step import mixed_precision
from src.configured_model import Sizes, model_for_data, for_this_device, registered_model_info


class Teacher:
    """`teacher(images) -> float32 logits Tensor`, in inference mode; `description` says what it is, `network` is
    the teacher's cell (None for an exported file)."""

    def __init__(self, run, description: str, network=None):
        self._run = run
        self.description = description
        self.network = network

    def __call__(self, images):
        return self._run(images)


def _class_count_error(key, path, found, num_classes):
    return ConfigError(f"config key '{key}': the teacher in {path} scores {found} classes but the student has "
                       f"{num_classes}; a teacher must be trained on the student's classes")


def _model_teacher(cfg, num_classes, in_channels) -> Teacher:
    info = registered_model_info(cfg.teacher_model, key="teacher_model")
    weights, _ = model_weights(read_checkpoint(cfg.teacher_ckpt)[0], cfg.teacher_ckpt)
    head = [value for key, value in weights.items()
            if key.startswith(f"{info.classifier}.") and key.endswith("weight")]
    if head and head[-1].shape[0] != num_classes:
        raise _class_count_error("teacher_ckpt", cfg.teacher_ckpt, head[-1].shape[0], num_classes)
    # The teacher's own architecture: its name gives the width; the student's overrides do not apply to it.
    teacher_cfg = dataclasses.replace(cfg, model=cfg.teacher_model, num_classes=num_classes, in_channels=in_channels,
                                      width=None, ghost_ratio=None, drop_rate=0.0)
    net = for_this_device(model_for_data(teacher_cfg, Sizes(num_classes, in_channels)), teacher_cfg)
    kind = load_weights(net, cfg.teacher_ckpt)  # every key and shape must fit, or an error names them
    for param in net.get_parameters():
        param.requires_grad = False
    net = mixed_precision(net, cfg.amp_level)
    net.set_train(False)
    return Teacher(net, f"{cfg.teacher_model} ({kind} weights of {cfg.teacher_ckpt})", net)


def _exported_teacher(cfg, num_classes, in_channels) -> Teacher:
    path = cfg.teacher_mindir
    try:
        model = load_exported(path)
    except ExportedModelError as err:
        raise ConfigError(f"config key 'teacher_mindir': {err}") from err
    expected = (in_channels, cfg.image_size, cfg.image_size)
    if tuple(model.input_shape[1:]) != expected:
        raise ConfigError(f"config key 'teacher_mindir': {path} takes {' x '.join(map(str, model.input_shape[1:]))} "
                          f"inputs but the student trains on {' x '.join(map(str, expected))} images")
    found = model(np.zeros((model.input_shape[0] or 1, *expected), np.float32)).shape[-1]
    if found != num_classes:
        raise _class_count_error("teacher_mindir", path, found, num_classes)
    return Teacher(lambda images: model(images).astype(ms.float32), f"{model.format} {path}")


def build_teacher(cfg, num_classes: int, in_channels: int):
    """The config's teacher for a student of `num_classes` classes on `in_channels`-channel images; None when the
    config names none. Errors (unknown model, checkpoint that does not fit, class-count mismatch) name the key."""
    if cfg.teacher_mindir:
        return _exported_teacher(cfg, num_classes, in_channels)
    if cfg.teacher_model:
        return _model_teacher(cfg, num_classes, in_channels)
    return None
