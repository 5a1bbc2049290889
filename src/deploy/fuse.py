"""A trained network's inference form: re-parameterised branches fused, then each BatchNorm that alone reads a
conv's output (found by tracing, src/surgery.py) folded into that conv. The result holds MindSpore's own cells only."""
import numpy as np
import mindspore.nn as nn
from mindspore import Parameter, Tensor

from src.models.layers import folded_batchnorm
from src.surgery import Trace, clear_compile_caches, replace_cell


def reparameterize(net):
    """Call `reparameterize()` on every cell that has one (multi-branch blocks that fuse into a single conv).

    Runs before BN folding, so a branch that becomes conv + BN is folded too.
    """
    for _, cell in list(net.cells_and_names()):
        if callable(getattr(cell, "reparameterize", None)):
            cell.reparameterize()


def _fold(conv, bn, conv_name):
    """Fold `bn`'s eval-mode affine transform into `conv` (float64 arithmetic, stored as float32)."""
    bias = conv.bias.asnumpy().astype(np.float64) if conv.has_bias else 0.0
    weight, bias = folded_batchnorm(conv.weight.asnumpy().astype(np.float64), bias, bn)
    conv.weight.set_data(Tensor(weight.astype(np.float32)))
    if conv.has_bias:
        conv.bias.set_data(Tensor(bias.astype(np.float32)))
    else:
        conv.bias = Parameter(Tensor(bias.astype(np.float32)), name=f"{conv_name}.bias")
        conv.has_bias = True


def fold_batchnorm(net, sample):
    """Fold every traceable conv -> BN pair of `net` (in eval mode) in place; returns the folded (conv, BN) names.

    `sample` is an input batch of the shape the network will see; its values do not matter. Only MindSpore's own
    `nn.BatchNorm2d` folds (a subclass may compute something else): fold the plain network, then accelerate it.
    """
    net.set_train(False)
    trace = Trace(net, sample)
    cells = dict(net.cells_and_names())
    pairs = []
    for conv_name, conv in cells.items():
        bn_name = trace.only_reader(conv_name)
        bn = cells.get(bn_name)
        if (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.use_batch_statistics is not True
                and conv.data_format == "NCHW" and bn.moving_mean.shape[0] == conv.out_channels):
            pairs.append((conv_name, bn_name))
    for conv_name, bn_name in pairs:
        _fold(cells[conv_name], cells[bn_name], conv_name)
        replace_cell(net, bn_name, nn.Identity())
    clear_compile_caches(net)
    return pairs


def prepare_for_inference(net, sample):
    """Eval mode (dropout off), re-parameterised branches fused, BN folded. Returns the folded pairs."""
    net.set_train(False)
    reparameterize(net)
    return fold_batchnorm(net, sample)
