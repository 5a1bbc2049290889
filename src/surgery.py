"""Changing a built network in place, shared by BN folding (src/deploy) and the CPU kernel pass (src/kernels).

Which cell feeds which is found by tracing, not by names: one eval-mode PyNative forward with hooks on every cell.
An output read also by a bare `ops` call is invisible to the hooks; the callers' tests compare outputs before and
after.
"""
import mindspore
import mindspore.nn as nn


class Trace:
    """Who read what in one forward pass: `only_reader(name)` and `calls[name]` by cell name."""

    def __init__(self, net, sample):
        self.calls, self._output, self._readers, self._alias = {}, {}, {}, {}
        alive = []  # keep every traced tensor referenced so that no id() is reused during the pass
        cells = dict(net.cells_and_names())
        handles = [cell.register_forward_hook(self._hook(name, alive)) for name, cell in cells.items() if name]
        previous_mode, phase = mindspore.get_context("mode"), net.phase
        modes = [(cell, cell.training) for cell in cells.values()]
        try:
            mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
            net.set_train(False)
            net(sample)
        finally:
            for handle in handles:
                handle.remove()
            for cell, training in modes:  # the caller's training flags, as they were
                cell.add_flags(training=training)
            net.phase = phase
            mindspore.set_context(mode=previous_mode)

    def _hook(self, name, alive):
        def record(cell, inputs, output):
            self.calls[name] = self.calls.get(name, 0) + 1
            if list(cell.cells()):  # a container passes its input on to its children
                return
            alive.extend(inputs)
            alive.append(output)
            ids = [self._alias.get(id(tensor), id(tensor)) for tensor in inputs]
            if type(cell) is nn.Identity:
                self._alias[id(output)] = ids[0]
                return
            for tensor_id in ids:
                self._readers.setdefault(tensor_id, []).append(name)
            self._output[name] = id(output)
        return record

    def only_reader(self, name):
        """The one cell that read `name`'s output (both run once), or None."""
        if self.calls.get(name) != 1 or name not in self._output:
            return None
        readers = self._readers.get(self._output[name], [])
        return readers[0] if len(readers) == 1 and self.calls[readers[0]] == 1 else None


def replace_cell(net, path, new_cell):
    """Put `new_cell` at `path` (a name from `net.cells_and_names()`). Its parameters keep the names they carry, so
    a cell that took over the old one's Parameter objects keeps its checkpoint keys (a parameterless cell: none)."""
    names = {id(param): param.name for param in new_cell.get_parameters()}
    parent_path, _, key = path.rpartition(".")
    parent = net if not parent_path else dict(net.cells_and_names())[parent_path]
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[list(parent.name_cells()).index(key)] = new_cell  # keeps the container's cell list in step
    else:
        setattr(parent, key, new_cell)
    for param in new_cell.get_parameters():  # attaching renamed them relative to the parent
        param.name = names[id(param)]


def adopt_cells(cell, module, names):
    """Give `cell` (a fresh nn.Cell) the child cells `names` of `module`, keeping their parameters' names: a fused
    form of `module` that holds its cells, so nothing is built or drawn at random."""
    param_names = {id(param): param.name for param in module.get_parameters()}
    for name in names:
        setattr(cell, name, getattr(module, name))
    for param in cell.get_parameters():  # attaching the cells renamed them relative to `cell`
        param.name = param_names[id(param)]


def clear_compile_caches(net):
    """After a change: graph mode would otherwise rerun a graph compiled before it."""
    for _, cell in net.cells_and_names():
        cell.compile_cache.clear()
