"""Convert GhostNet weights of PyTorch (official, timm), MindCV or the MindSpore model zoo to this repo's .ckpt.

    python scripts/convert_checkpoint.py --model ghostnet_100 --input ghostnet_1x.pth --output ghostnet_100.ckpt
    python scripts/convert_checkpoint.py --model ghostnet_100 --input model_best.pth.tar --use-ema \\
        --output ghostnet_100_ema.ckpt
    python scripts/convert_checkpoint.py --model ghostnet_100 --input ghostnet_1x.pth --num-classes 10 \\
        --output ghostnet_100_10cls.ckpt   # new, freshly initialised classifier for fine-tuning
    python scripts/convert_checkpoint.py --model ghostnet_130 --input ghostnet_130-cf4c235c.ckpt --output g130.ckpt
    python scripts/convert_checkpoint.py --model ghostnet_100_nose --input ghostnet_nose_1x_pets.ckpt \\
        --output ghostnet_100_nose_pets.ckpt   # model zoo: ghostnet_1x, ghostnet_nose_1x, ghostnet600M -> ghostnet_600

--format auto (the default) reads .ckpt files as MindSpore checkpoints (MindCV's or the model zoo's, told apart by
their keys) and anything else as PyTorch, without torch and without unpickling arbitrary objects; the layouts are
src/checkpoint's. MindCV and zoo checkpoints also load unconverted. The output is written atomically and read back.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import src  # noqa: E402,F401  (before mindspore)
from src.atomic_files import WriteError  # noqa: E402
from src.checkpoint import CheckpointError  # noqa: E402
from src.checkpoint.convert import FORMATS, convert_checkpoint  # noqa: E402
from src.models import list_models  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=list_models(), metavar="NAME",
                        help="registered model name, e.g. ghostnet_100")
    parser.add_argument("--input", required=True, type=Path, help=".pth, .pth.tar, .pt, .safetensors or .ckpt")
    parser.add_argument("--output", required=True, type=Path, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="source layout (default auto: by the file's extension and keys)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes of the output model (default: the checkpoint's); another value gets a "
                             "freshly initialised classifier")
    parser.add_argument("--use-ema", action="store_true",
                        help="take the EMA weights (state_dict_ema) of a PyTorch training checkpoint; a MindSpore "
                             "checkpoint's EMA weights (ema.*) are taken whenever it has them")
    args = parser.parse_args(argv)

    report = convert_checkpoint(args.model, args.input, args.output, args.num_classes, args.use_ema, args.format)
    for note in report.notes:
        print(note)
    print(f"{args.input}: {report.source_tensors} {report.format} tensors -> {report.converted} MindSpore parameters "
          f"({args.model}, {report.num_classes} classes)")
    if report.fresh:
        print(f"freshly initialised (new classifier): {', '.join(report.fresh)}")
    print(f"wrote {args.output} ({report.saved} parameters, verified by reading it back)")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, CheckpointError, WriteError) as err:
        sys.exit(f"convert_checkpoint.py: error: {err}")
