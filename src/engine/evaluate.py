"""Evaluation of any callable network (a model cell, an AMP-wrapped cell, a GraphCell over an exported MINDIR)
on an evaluation dataset of (image, integer label) batches; train.py's per-epoch validation and validate.py
share it.
"""
import mindspore.nn as nn

from src.engine.metrics import ClassificationMeter


def evaluate(network, dataset, num_classes: int, class_names=None) -> dict:
    """Top-1/top-5, mean cross-entropy, per-class precision/recall/F1 and the confusion matrix (metrics.py)."""
    if isinstance(network, nn.Cell):
        network.set_train(False)  # BN uses its moving statistics, dropout is off
    meter = ClassificationMeter(num_classes)
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        meter.update(network(images).asnumpy(), labels.asnumpy())
    return meter.report(class_names)
