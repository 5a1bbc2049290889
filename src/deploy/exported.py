"""Run an exported network (MINDIR through MindSpore, ONNX through ONNX Runtime) like a model: batch in, logits out.

`load_exported(path)` is what `validate.py --mindir` and `scripts/predict.py` use: like a model cell it returns a
Tensor, so `src.engine.evaluate` takes it as it is. export.py writes a dynamic batch dimension by default, so any
batch size goes straight through; a file exported with a fixed `--batch_size N` only accepts batches of N, so the
loader splits larger batches, zero-pads a short last one (validation's final partial batch) and drops the padded
rows from the result.
"""
import os

import numpy as np
import mindspore


class ExportedModelError(ValueError):
    """An exported file that cannot be loaded, or a batch that does not fit it."""


class ExportedModel:
    """Callable over a loaded graph: `model(batch) -> float32 logits Tensor`, batch NCHW numpy or Tensor.

    `input_shape` is (N, C, H, W) as exported, N None when the batch dimension is dynamic.
    """

    def __init__(self, path, file_format, input_shape, run):
        self.path, self.format, self.input_shape, self._run = path, file_format, input_shape, run

    def __call__(self, batch):
        batch = np.ascontiguousarray(batch.asnumpy() if hasattr(batch, "asnumpy") else batch, np.float32)
        expected = self.input_shape[1:]
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ExportedModelError(f"{self.path} takes N x {' x '.join(map(str, expected))} batches, "
                                     f"got shape {tuple(batch.shape)}")
        size = self.input_shape[0]
        if size is None or len(batch) == size:
            return mindspore.Tensor(self._run(batch))
        outputs = []
        for start in range(0, len(batch), size):
            chunk = batch[start:start + size]
            padded = np.concatenate([chunk, np.zeros((size - len(chunk), *expected), np.float32)])
            outputs.append(self._run(padded)[:len(chunk)])
        return mindspore.Tensor(np.concatenate(outputs))


def _mindir_input_shape(path):
    """Input shape recorded in the MINDIR protobuf (-1 marks a dynamic dimension)."""
    from mindspore.train.mind_ir_pb2 import ModelProto  # ships with MindSpore; GraphCell exposes no shapes

    proto = ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return tuple(proto.graph.input[0].tensor[0].dims)


def _load_mindir(path):
    graph = mindspore.nn.GraphCell(mindspore.load(path))
    return _mindir_input_shape(path), lambda batch: graph(mindspore.Tensor(batch)).asnumpy()


def _load_onnx(path):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportedModelError(f"running {path} needs onnxruntime: pip install onnxruntime") from err
    options = ort.SessionOptions()
    # MindSpore writes the output's batch dimension as the export-time batch even when the input's is dynamic;
    # ONNX Runtime would warn about it on every other batch size.
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    (node,) = session.get_inputs()
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return shape, lambda batch: session.run(None, {node.name: batch})[0]


_LOADERS = {".mindir": ("MINDIR", _load_mindir), ".onnx": ("ONNX", _load_onnx)}


def load_exported(path):
    """Load a `.mindir` or `.onnx` file written by export.py as an `ExportedModel` (callable batch -> logits)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in _LOADERS:
        raise ExportedModelError(f"cannot run {path}: expected a .mindir or .onnx file")
    if not os.path.isfile(path):
        raise ExportedModelError(f"exported model not found: {path}")
    file_format, loader = _LOADERS[ext]
    shape, run = loader(path)
    if len(shape) != 4:
        raise ExportedModelError(f"{path} takes a {len(shape)}-d input; expected an N x C x H x W image batch")
    return ExportedModel(path, file_format, (None if shape[0] < 0 else shape[0], *shape[1:]), run)
