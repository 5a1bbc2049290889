"""Evaluation of any callable network (a cell, an AMP-wrapped cell, an exported model) on (image, label) batches,
shared by training's validation and validate.py; `across_ranks=True` sums every rank's meter over its shard."""
import mindspore.nn as nn

from src.distributed import sum_across_ranks
from src.engine.metrics import ClassificationMeter


def evaluate(network, dataset, num_classes: int, class_names=None, across_ranks=False) -> dict:
    """Top-1/top-5, mean cross-entropy, per-class precision/recall/F1 and the confusion matrix (metrics.py)."""
    if isinstance(network, nn.Cell):
        network.set_train(False)  # BN uses its moving statistics, dropout is off
    meter = ClassificationMeter(num_classes)
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        meter.update(network(images).asnumpy(), labels.asnumpy())
    if across_ranks:
        meter.load_state(sum_across_ranks(meter.state()))
    return meter.report(class_names)
