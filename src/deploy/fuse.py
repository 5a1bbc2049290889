"""Turn a trained network into its inference form: re-parameterised branches fused, BatchNorm folded into convs.

Which BN folds is found by tracing, not by naming conventions: one eval-mode forward pass in PyNative mode with
hooks on every cell records which tensor each Conv2d produced and which tensor each BatchNorm2d consumed. A BN
folds into a conv when its input *is* that conv's output (the same tensor object), both cells run exactly once,
and no other cell consumes the conv's output. That covers `SequentialCell([Conv2d, BatchNorm2d, ...])` and
attribute pairs applied in sequence (`bn1(conv_stem(x))`, `bn_dw(conv_dw(x))`, `bn1(conv(x))`) in any family,
without a list of names to keep in sync. An output also used by a plain `ops` call (`bn(y) + y`) is invisible to
the hooks; `fold_batchnorm`'s callers compare outputs before and after, which catches such a model.

Folding: with s = gamma / sqrt(moving_variance + eps), the conv weight becomes w * s (per output channel) and
its bias (added when it had none) beta + (b - moving_mean) * s; the BN is replaced by `nn.Identity`.

The same trace finds a ReLU that is the only reader of a conv's (or its folded BN's) output. When the conv can apply
it in its own kernel (it has `absorb_relu()`: the custom-kernel cells of src/kernels and
`src.models.layers.PointwiseConv2d`), it does, and the ReLU cell becomes `nn.Identity`: one launch instead of three
(conv, bias, ReLU) per conv at batch-1 inference on CPU. A ReLU run inside a BN (`BatchNorm2d(relu=True)`) moves
into the conv the same way, or becomes an `nn.ReLU` cell where the conv cannot take it.
"""
import numpy as np
import mindspore
import mindspore.nn as nn
from mindspore import Parameter, Tensor


def reparameterize(net):
    """Call `reparameterize()` on every cell that has one (multi-branch blocks that fuse into a single conv).

    Runs before BN folding, so a branch that becomes conv + BN is folded too.
    """
    for _, cell in list(net.cells_and_names()):
        if callable(getattr(cell, "reparameterize", None)):
            cell.reparameterize()


def _trace(net, sample):
    """One PyNative eval forward with hooks: (conv -> BN pairs that can fold as (conv name, BN name),
    {conv name: name of the ReLU cell that alone reads the conv's or its folded BN's output})."""
    produced, consumers, calls = {}, {}, {}
    alive = []  # keep every traced tensor referenced so that no id() is reused during the pass

    def hook(name):
        def record(cell, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if not list(cell.cells()):  # leaf cells only: a container passes its input on to its children
                for tensor in inputs:
                    consumers.setdefault(id(tensor), []).append(name)
                alive.extend(inputs)
            if isinstance(cell, (nn.Conv2d, nn.BatchNorm2d)):
                produced[id(output)] = name
                alive.append(output)
        return record

    cells = dict(net.cells_and_names())
    handles = [cell.register_forward_hook(hook(name)) for name, cell in cells.items() if name]
    previous_mode = mindspore.get_context("mode")
    try:
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
        net(sample)
    finally:
        for handle in handles:
            handle.remove()
        mindspore.set_context(mode=previous_mode)

    def only_reader(tensor_id):
        users = consumers.get(tensor_id, [])
        return users[0] if len(users) == 1 and calls[users[0]] == 1 else None

    output_of = {name: tensor_id for tensor_id, name in produced.items()}
    pairs, relus = [], {}
    for tensor_id, conv_name in produced.items():
        conv = cells[conv_name]
        if not isinstance(conv, nn.Conv2d) or calls[conv_name] != 1:
            continue
        reader = only_reader(tensor_id)
        bn = cells.get(reader)
        if (isinstance(bn, nn.BatchNorm2d) and bn.use_batch_statistics is not True and conv.data_format == "NCHW"
                and bn.moving_mean.shape[0] == conv.out_channels):
            pairs.append((conv_name, reader))
            reader = only_reader(output_of[reader])
        if type(cells.get(reader)) is nn.ReLU:  # exactly: a subclass may compute something else
            relus[conv_name] = reader
    return pairs, relus


def _replace_child(net, path, new_cell):
    parent_path, _, key = path.rpartition(".")
    parent = net if not parent_path else dict(net.cells_and_names())[parent_path]
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[list(parent.name_cells()).index(key)] = new_cell  # keeps the container's cell list in step
    else:
        setattr(parent, key, new_cell)


def _fold(conv, bn, conv_name):
    """Fold `bn`'s eval-mode affine transform into `conv` (float64 arithmetic, stored as float32)."""
    scale = bn.gamma.asnumpy().astype(np.float64) / np.sqrt(bn.moving_variance.asnumpy().astype(np.float64)
                                                             + bn.eps)
    bias = conv.bias.asnumpy().astype(np.float64) if conv.has_bias else 0.0
    weight = conv.weight.asnumpy().astype(np.float64) * scale.reshape(-1, 1, 1, 1)
    new_bias = bn.beta.asnumpy().astype(np.float64) + (bias - bn.moving_mean.asnumpy()) * scale
    conv.weight.set_data(Tensor(weight.astype(np.float32)))
    if conv.has_bias:
        conv.bias.set_data(Tensor(new_bias.astype(np.float32)))
    else:
        conv.bias = Parameter(Tensor(new_bias.astype(np.float32)), name=f"{conv_name}.bias")
        conv.has_bias = True


def fold_batchnorm(net, sample):
    """Fold every traceable conv -> BN pair of `net` (in eval mode) in place, and move each ReLU that follows one of
    them into the conv where it can run there; returns the folded (conv, BN) names.

    `sample` is an input batch of the shape the network will see; its values do not matter.
    """
    net.set_train(False)
    pairs, relus = _trace(net, sample)
    cells = dict(net.cells_and_names())
    for conv_name, bn_name in pairs:
        conv = cells[conv_name]
        _fold(conv, cells[bn_name], conv_name)
        replacement = nn.Identity()
        if getattr(cells[bn_name], "relu", False):
            if hasattr(conv, "absorb_relu"):
                conv.absorb_relu()
            else:
                replacement = nn.ReLU()
        _replace_child(net, bn_name, replacement)
    for conv_name, relu_name in relus.items():
        if hasattr(cells[conv_name], "absorb_relu"):
            cells[conv_name].absorb_relu()
            _replace_child(net, relu_name, nn.Identity())
    for _, cell in net.cells_and_names():  # graph mode would reuse a graph compiled before the change
        cell.compile_cache.clear()
    return pairs


def prepare_for_inference(net, sample):
    """Eval mode (dropout off), re-parameterised branches fused, BN folded. Returns the folded pairs."""
    net.set_train(False)
    reparameterize(net)
    return fold_batchnorm(net, sample)
