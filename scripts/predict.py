"""Classify image files with a trained checkpoint or an exported MINDIR / ONNX file; print the top-5 classes.

    python scripts/predict.py --config CFG --ckpt_path outputs/run/best.ckpt --images photo.jpg more_photos/
    python scripts/predict.py --config CFG --mindir outputs/run/best.mindir --images photos/ --json
    python scripts/predict.py --config CFG --mindir model.onnx --labels names.txt --images photos/

Images are preprocessed as the evaluation pipeline does (src/data/transforms.py: resize by crop_pct, centre crop,
normalise with the dataset's mean / std; grey for 1-channel models); the config gives image_size, crop_pct,
interpolation, dataset and mean / std (an exported file's own input size wins over image_size). Class names come
from --labels (one name per line) when given, else from the checkpoint (training stores them), else from the
training split of the config's dataset (its class folders, for folder data; no image is read). Other `--key value`
flags override the config keys predict.py reads (`--ckpt_path` is one; --help lists them). Folders are searched
recursively. The model runs on the best device this MindSpore build and machine can use unless --device_target
names one.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (before mindspore: caps oneDNN's ISA)
import mindspore  # noqa: E402

from src.checkpoint import CheckpointError, checkpoint_class_names  # noqa: E402
from src.config import ConfigError, config_help, load_config, parse_overrides  # noqa: E402
from src.configured_model import for_this_device, model_from_checkpoint  # noqa: E402
from src.data import DatasetError, dataset_statistics, image_file_preprocess, split_class_names  # noqa: E402
from src.data.readers import IMAGE_EXTENSIONS  # noqa: E402
from src.deploy import ExportedModelError, load_exported  # noqa: E402
from src.device import setup_context  # noqa: E402

TOP_K = 5
BATCH = 16


class PredictError(ValueError):
    """Inputs that cannot be classified as asked; the message names the file or flag."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=config_help("predict.py"))
    parser.add_argument("--images", nargs="+", required=True, metavar="PATH", help="image files and/or folders")
    parser.add_argument("--config", help="YAML config the model was trained with")
    parser.add_argument("--mindir", help="exported .mindir (or .onnx) file to run instead of --ckpt_path")
    parser.add_argument("--labels", help="text file of class names, one per line (default: the dataset's)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_known_args(argv)


def find_images(paths):
    """Files as given, folders searched recursively for image files (sorted)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            in_folder = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                               if name.lower().endswith(IMAGE_EXTENSIONS))
            if not in_folder:
                raise PredictError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
            found += in_folder
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise PredictError(f"image file or folder not found: {path}")
    return found


def load_model(cfg, mindir):
    """-> (batch -> logits Tensor, input channels); sets cfg.image_size to an exported file's input size."""
    if mindir:
        model = load_exported(mindir)
        _, channels, height, width = model.input_shape
        if height != width:
            raise PredictError(f"{mindir} takes {height} x {width} inputs; predict.py feeds square images")
        cfg.image_size = height
        return model, channels
    if not cfg.ckpt_path:
        raise PredictError("give the model: --ckpt_path FILE (with --config) or --mindir FILE")
    net, _, channels = model_from_checkpoint(cfg, cfg.ckpt_path)
    return for_this_device(net, cfg), channels


def class_names(cfg, labels_path, mindir):
    """-> (names, where they come from): --labels (one per line), else the checkpoint's, else the training split's,
    read before any image is classified."""
    if labels_path:
        if not os.path.isfile(labels_path):
            raise PredictError(f"labels file not found: {labels_path}")
        with open(labels_path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()], labels_path
    stored = None if mindir or not cfg.ckpt_path else checkpoint_class_names(cfg.ckpt_path)
    if stored is not None:
        return list(stored), cfg.ckpt_path
    try:
        return list(split_class_names(cfg, cfg.train_split)), f"the {cfg.train_split} split of {cfg.data_dir}"
    except DatasetError as err:
        raise PredictError(f"no class names: {mindir or cfg.ckpt_path or 'the model file'} holds none and the "
                           f"{cfg.train_split} split of the {cfg.dataset} data cannot be read ({err}); pass --labels "
                           f"FILE with one name per line") from err


def top_k(logits, names, k=TOP_K):
    """Softmax probabilities of the k most likely classes, best first."""
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")[:k]
    return [dict(index=int(i), name=names[i], probability=float(probs[i])) for i in order]


def main(argv=None):
    args, rest = parse_args(argv)
    cfg = load_config(args.config, parse_overrides(rest, "predict.py"))
    device = setup_context(cfg)  # an unusable device is an error before any work
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)  # a few batches: compiling a graph would cost more
    dataset_statistics(cfg)  # so are an unknown dataset and a bad mean / std
    paths = find_images(args.images)
    # stdout is the results (a table or JSON a caller may parse); the run's first line goes to stderr
    print(f"predict.py: {args.mindir or cfg.model} on {device}, {len(paths)} image(s)", file=sys.stderr, flush=True)
    names, names_source = class_names(cfg, args.labels, args.mindir)
    model, in_channels = load_model(cfg, args.mindir)
    preprocess = image_file_preprocess(cfg, in_channels)

    logits = []
    for start in range(0, len(paths), BATCH):
        batch = np.stack([preprocess(path) for path in paths[start:start + BATCH]])
        logits.append(model(mindspore.Tensor(batch)).asnumpy())
    logits = np.concatenate(logits)
    if len(names) != logits.shape[1]:
        raise PredictError(f"{names_source} names {len(names)} classes, the model predicts {logits.shape[1]}")
    results = [dict(image=path, top5=top_k(row, names)) for path, row in zip(paths, logits)]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(result["image"])
        for rank, item in enumerate(result["top5"], 1):
            print(f"  {rank}. {item['name']:<30} {100 * item['probability']:6.2f}%  (class {item['index']})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (PredictError, ConfigError, DatasetError, CheckpointError, ExportedModelError) as err:
        print(f"predict.py: error: {err}", file=sys.stderr)
        sys.exit(2)
