"""Export a trained checkpoint for inference (MINDIR by default, ONNX, or AIR on Ascend) and check the file.

    python export.py --config configs/ghostnet/ghostnet_100_imagenet.yaml --ckpt_path outputs/run/best.ckpt
    python export.py --config CFG --ckpt_path CKPT --file_format ONNX --static_batch 1 --image_size 224 224
    python export.py --config CFG --ckpt_path CKPT --num_classes 10 --in_channels 1 --small_input true

Other `--key value` flags override the config keys export.py reads (--help lists them); num_classes / in_channels
left null in the config are read off the checkpoint. The network is exported in inference form (eval mode,
re-parameterisable branches fused, BatchNorm folded into the preceding convs: src/deploy/fuse.py) with a dynamic
batch dimension unless --static_batch fixes it, to `--output` (default: the checkpoint's path with the format's
suffix).

The file is then loaded back (MINDIR: mindspore.load + nn.GraphCell; ONNX: onnxruntime, when installed) and
compared with the checkpoint network, unfolded, on a random batch; the exit status is 1 when the largest
difference exceeds 1e-4 + 1e-5 x the largest |logit| (float32 rounding grows with the logits' scale). AIR
(deprecated by MindSpore) needs an Ascend device and cannot be loaded back by MindSpore, so it is not checked. The
export runs on the best device this MindSpore build and machine can use (--device_target to choose). Bad arguments
exit with status 2 and a message saying what is wrong.
"""
import argparse
import importlib.util
import os
import sys
import tempfile

import numpy as np

import src  # noqa: F401  (before mindspore: caps oneDNN's ISA)
import mindspore

from src.atomic_files import WriteError, copy_atomic, replace_atomic
from src.checkpoint import CheckpointError
from src.config import ConfigError, config_help, load_config, parse_overrides
from src.configured_model import model_from_checkpoint
from src.deploy import ExportedModelError, load_exported, prepare_for_inference
from src.device import setup_context

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}
ABSOLUTE_TOLERANCE = 1e-4  # the reloaded file may differ by this plus RELATIVE_TOLERANCE x the largest |logit|
RELATIVE_TOLERANCE = 1e-5  # float32 rounding is relative: ~1e-6 of the logits' scale through a deep network
CHECK_BATCH = 2  # random batch for the comparison when the batch dimension is dynamic


class ExportError(ValueError):
    """Arguments that cannot give a valid export; the message says which and why."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=config_help("export.py"))
    parser.add_argument("--config", help="YAML config the checkpoint was trained with")
    parser.add_argument("--file_format", default="MINDIR", help="MINDIR (default), ONNX or AIR")
    parser.add_argument("--static_batch", type=int, help="fix the exported batch dimension (default: dynamic)")
    parser.add_argument("--image_size", type=int, nargs="+", metavar="H [W]",
                        help="input height and width (one value: square; default: the config's image_size)")
    parser.add_argument("--output", help="file to write (default: the checkpoint path with the format's suffix)")
    return parser.parse_known_args(argv)


def _check_arguments(args, cfg, device):
    """Every argument error before any model is built: -> (format, (H, W), output path)."""
    file_format = args.file_format.upper()
    if file_format not in FORMATS:
        raise ExportError(f"--file_format must be one of {', '.join(FORMATS)}, got {args.file_format!r}")
    if file_format == "AIR" and device != "Ascend":
        raise ExportError(f"AIR export needs an Ascend device, this run has {device}; export MINDIR or ONNX instead")
    if not cfg.ckpt_path:
        raise ExportError("no checkpoint given: pass --ckpt_path FILE")
    if not os.path.isfile(cfg.ckpt_path):
        raise ExportError(f"checkpoint file not found: {cfg.ckpt_path}")
    size = args.image_size or [cfg.image_size]
    if len(size) > 2 or min(size) < 1:
        raise ExportError(f"--image_size takes one or two positive integers (H [W]), got {size}")
    if args.static_batch is not None and args.static_batch < 1:
        raise ExportError(f"--static_batch must be at least 1, got {args.static_batch}")
    output = args.output or os.path.splitext(cfg.ckpt_path)[0]
    if not output.lower().endswith(FORMATS[file_format]):
        output += FORMATS[file_format]
    return file_format, (size[0], size[-1]), output


def _check_image_size(net, name, size):
    reduction = net.feature_info[-1]["reduction"]
    if min(size) < reduction:
        raise ExportError(f"--image_size {size[0]} {size[1]} is too small for {name}: it downsamples {reduction}x, "
                          f"so inputs need at least {reduction} x {reduction} pixels")


def _max_difference(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _write(net, file_format, sample, static_batch, output):
    """Export `net` through the atomic writer; the batch dimension is dynamic unless `static_batch` is given.
    Compiled on a sample of shape [None, ...], the graph declares the batch dynamic on its outputs as on its input
    (ONNX: named `batch`). MindSpore's ONNX writer logs a failed write and returns, so it writes to a scratch
    folder that is then copied."""
    if static_batch is None:
        sample = mindspore.Tensor(shape=[None, *sample.shape[1:]], dtype=mindspore.float32)
    if file_format == "ONNX":
        dynamic = {"image": {0: "batch"}} if static_batch is None else None
        with tempfile.TemporaryDirectory() as scratch:
            exported = os.path.join(scratch, "model.onnx")
            mindspore.onnx.export(net, sample, file_name=exported, input_names=["image"], output_names=["logits"],
                                  dynamic_axes=dynamic)
            if not os.path.isfile(exported):
                raise ExportError(f"MindSpore wrote no ONNX file for {output} (its log says why)")
            copy_atomic(exported, output)
        return
    replace_atomic(output, lambda tmp: mindspore.export(net, sample, file_name=tmp, file_format=file_format),
                   suffix=FORMATS[file_format])


def main(argv=None):
    """Export and verify; returns the exit status (0, or 1 when the reloaded file differs beyond the tolerance)."""
    args, rest = parse_args(argv)
    cfg = load_config(args.config, parse_overrides(rest, "export.py"))
    device = setup_context(cfg)
    file_format, size, output = _check_arguments(args, cfg, device)
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)  # a few forward passes: cheaper than compiling them

    # The plain network, never `for_this_device`: the file must hold MindSpore's own ops, not this machine's kernels.
    net, kind, in_channels = model_from_checkpoint(cfg, cfg.ckpt_path)
    _check_image_size(net, cfg.model, size)
    export_batch = args.static_batch or (1 if file_format == "AIR" else None)  # AIR has no dynamic batch
    batch = export_batch or CHECK_BATCH
    rng = np.random.default_rng(cfg.seed)
    sample = mindspore.Tensor(rng.standard_normal((batch, in_channels, *size)).astype(np.float32))
    try:
        reference = net(sample).asnumpy()
    except (RuntimeError, ValueError) as err:
        raise ExportError(f"{cfg.model} cannot run on {size[0]} x {size[1]} inputs: {err}") from err

    pairs = prepare_for_inference(net, sample)
    folded_difference = _max_difference(net(sample).asnumpy(), reference)
    print(f"{cfg.model} ({kind} weights of {cfg.ckpt_path}) on {cfg.device_target}: {len(pairs)} conv+BN pairs "
          f"folded, max |difference| {folded_difference:.3g}")

    _write(net, file_format, sample, export_batch, output)
    shape = f"{export_batch or 'N'} x {in_channels} x {size[0]} x {size[1]}"
    print(f"wrote {output} ({file_format}, input {shape}, {os.path.getsize(output) / 2 ** 20:.1f} MiB)")

    if file_format == "AIR":
        print("AIR cannot be loaded back by MindSpore: not verified")
        return 0
    if file_format == "ONNX" and importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed: skipped loading the ONNX file back (pip install onnxruntime)")
        return 0
    difference = _max_difference(load_exported(output)(sample).asnumpy(), reference)
    scale = float(np.abs(reference).max())
    tolerance = ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * scale
    within = difference <= tolerance
    verdict = "OK" if within else "FAILED"
    relative = difference / scale if scale else 0.0
    print(f"reloaded {file_format} vs checkpoint network, random batch of {batch}: max |difference| "
          f"{difference:.3g}, {relative:.3g} of the largest |logit| {scale:.3g} "
          f"(allowed {ABSOLUTE_TOLERANCE:g} + {RELATIVE_TOLERANCE:g} x {scale:.3g} = {tolerance:.3g}) {verdict}")
    return 0 if within else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ExportError, ConfigError, CheckpointError, ExportedModelError, WriteError) as err:
        print(f"export.py: error: {err}", file=sys.stderr)
        sys.exit(2)
