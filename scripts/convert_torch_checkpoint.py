"""Convert PyTorch GhostNet weights (official .pth, timm .pth / .pth.tar / .safetensors) to a MindSpore .ckpt.

    python scripts/convert_torch_checkpoint.py --model ghostnet_100 --input ghostnet_1x.pth --output ghostnet_100.ckpt
    python scripts/convert_torch_checkpoint.py --model ghostnet_100 --input model_best.pth.tar --use-ema \
        --output ghostnet_100_ema.ckpt
    python scripts/convert_torch_checkpoint.py --model ghostnet_100 --input ghostnet_1x.pth --num-classes 10 \
        --output ghostnet_100_10cls.ckpt   # new, freshly initialised classifier for fine-tuning

Torch is not needed: the file is read without unpickling arbitrary objects. The output is written atomically and
read back to check it.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import src  # noqa: E402,F401  (before mindspore)
from src.models import list_models  # noqa: E402
from src.models.convert import convert_checkpoint  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=list_models(), metavar="NAME",
                        help="registered model name, e.g. ghostnet_100")
    parser.add_argument("--input", required=True, type=Path, help=".pth, .pth.tar, .pt or .safetensors")
    parser.add_argument("--output", required=True, type=Path, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes of the output model (default: the checkpoint's); another value gets a "
                             "freshly initialised classifier")
    parser.add_argument("--use-ema", action="store_true",
                        help="take the EMA weights (state_dict_ema) of a training checkpoint")
    args = parser.parse_args(argv)

    report = convert_checkpoint(args.model, args.input, args.output, args.num_classes, args.use_ema)
    print(f"{args.input}: {report.torch_tensors} torch tensors -> {report.converted} MindSpore parameters "
          f"({args.model}, {report.num_classes} classes)")
    if report.fresh:
        print(f"freshly initialised (new classifier): {', '.join(report.fresh)}")
    print(f"wrote {args.output} ({report.saved} parameters, verified by reading it back)")


if __name__ == "__main__":
    main()
