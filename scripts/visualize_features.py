"""Feature maps of one layer for one image, and how redundant they are: the near-copies ("ghosts") of other maps
that motivate Ghost modules (GhostNet paper, Fig. 1).

    python scripts/visualize_features.py --config configs/ghostnet/ghostnet_100_fashion_mnist.yaml \\
        --ckpt_path outputs/ghostnet_100_fashion_mnist/best.ckpt --layer blocks.1.0.ghost1.primary_conv --index 0
    python scripts/visualize_features.py --config CFG --ckpt_path CKPT --layer conv_stem --image photo.png
    python scripts/visualize_features.py --config CFG --list_layers

The input is an image file (`--image`, preprocessed as the evaluation pipeline does) or image N of a dataset split
(`--index N`, read with src/data's create_dataset; `--split`, default the config's val_split). One image's figure
moves with the image: `--images K` also averages the redundancy over images N .. N+K-1 (the grid shows image N),
the figure to quote for a network. `--layer` is a cell name as `network.cells_and_names()` gives it. Without
`--ckpt_path` the weights are random (a seeded init).

Compare a network and its Ghost version on the same image: each `--compare` starts another model, given by its
own `--config`, `--layer` and `--key value` overrides; without `--config` it repeats the first model's settings
(layer included) with the overrides given after it. Plain VGG-16 (ghost_ratio 1) against Ghost-VGG-16 (s = 2):

    python scripts/visualize_features.py --config configs/ghost_vgg/ghost_vgg16_cifar10.yaml --data_dir DIR \\
        --index 0 --layer features.3 --ghost_ratio 1 --ckpt_path vgg16.ckpt \\
        --compare --ghost_ratio 2 --ckpt_path ghost_vgg16.ckpt

Per model, in its output_dir (`--output_dir DIR`), named features_<model>[_s<ratio>][_<ckpt>]_<layer>_<input>:
  .png   one tile per channel, each normalised to its own range; the `--pairs` most similar channel pairs
         (cosine similarity of the flattened maps) framed in colour and listed with their similarity;
  .json  the figures of src/analysis/redundancy.py: redundancy (mean over channels of the highest cosine similarity
         to another channel), the top pairs, each channel's nearest channel.
The redundancy of every model is printed; with --compare also written to redundancy_compare_<input>.json.
Trained VGG-16 against Ghost-VGG-16 (the comparison's runs, README):

    python scripts/visualize_features.py --config configs/comparison/fashion_mnist.yaml --model ghost_vgg16 \\
        --output_dir outputs/redundancy_vgg --index 0 --images 100 --layer features.4 --ghost_ratio 1 \\
        --ckpt_path outputs/comparison_fashion_mnist/ghost_vgg16_s1/best.ckpt \\
        --compare --ghost_ratio 2 --ckpt_path outputs/comparison_fashion_mnist/ghost_vgg16_s2/best.ckpt
Any other `--key value` overrides that config key (src/config.py), as in train.py.
"""
import argparse
import difflib
import math
import os
import sys
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (before mindspore: caps oneDNN's ISA)
import matplotlib  # noqa: E402
import mindspore as ms  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from src.analysis.redundancy import channel_redundancy  # noqa: E402
from src.atomic_files import WriteError, replace_atomic, write_json_atomic  # noqa: E402
from src.checkpoint import CheckpointError  # noqa: E402
from src.config import ConfigError, config_help, load_config, parse_overrides  # noqa: E402
from src.configured_model import Sizes, model_for_data, model_from_checkpoint, registered_model_info  # noqa: E402
from src.data import DatasetError, create_dataset, dataset_statistics, image_file_preprocess  # noqa: E402
from src.device import setup_context  # noqa: E402

COMPARE = "--compare"
ENTRY_POINT = "visualize_features.py"  # the config keys it reads: src/config.py ENTRY_POINT_KEYS
MAX_LISTED_LAYERS = 60  # an unknown --layer lists every valid name up to this many
PAIR_COLOURS = plt.get_cmap("tab10").colors


class VisualizeError(ValueError):
    """A layer, input or option that cannot be visualised as asked; the message names it."""


@dataclass
class ModelSpec:
    """One model to visualise: its resolved config and the layer to capture."""

    cfg: object
    layer: str


# --- command line --------------------------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=config_help(ENTRY_POINT))
    parser.add_argument("--config", help="YAML config of the model (the one it was trained with)")
    parser.add_argument("--layer", help="cell name as in network.cells_and_names(), e.g. blocks.1.0.ghost1")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", help="image file to feed (preprocessed as the evaluation pipeline does)")
    source.add_argument("--index", type=int, help="feed image N of the config's dataset split instead")
    parser.add_argument("--split", help="dataset split for --index (default: the config's val_split)")
    parser.add_argument("--images", type=int, default=1,
                        help="with --index N: also average the redundancy over images N .. N+K-1 (default 1)")
    parser.add_argument("--pairs", type=int, default=5, help="most similar channel pairs to mark (default 5)")
    parser.add_argument("--max_channels", type=int, default=0,
                        help="draw only the first this many channels (0: all; the figures use all)")
    parser.add_argument("--list_layers", action="store_true",
                        help="print every cell name with its output shape for the input, then stop")
    return parser


def _segment_parser():
    parser = argparse.ArgumentParser(prog=f"... {COMPARE}", allow_abbrev=False)
    parser.add_argument("--config")
    parser.add_argument("--layer")
    return parser


def parse_command_line(argv):
    """-> (shared options, [ModelSpec, ...]): the first model, then one per --compare."""
    argv = list(sys.argv[1:] if argv is None else argv)
    segments, current = [], []
    for arg in argv:
        if arg == COMPARE:
            segments.append(current)
            current = []
        else:
            current.append(arg)
    segments.append(current)
    args, rest = _parser().parse_known_args(segments[0])
    if args.pairs < 0 or args.max_channels < 0:
        raise VisualizeError("--pairs and --max_channels must be at least 0")
    if args.images < 1 or (args.images > 1 and args.index is None):
        raise VisualizeError("--images K needs --index N (images N .. N+K-1 of a dataset split) and K >= 1")
    first_overrides = parse_overrides(rest, ENTRY_POINT)
    specs = [ModelSpec(load_config(args.config, first_overrides), args.layer)]
    for segment in segments[1:]:
        seg, seg_rest = _segment_parser().parse_known_args(segment)
        shared = [a for a in seg_rest if a.split("=")[0] in ("--image", "--index", "--images", "--split", "--pairs",
                                                              "--max_channels", "--list_layers")]
        if shared:
            raise VisualizeError(f"{shared[0].split('=')[0]} applies to every model: give it before the first "
                                 f"{COMPARE}")
        overrides = parse_overrides(seg_rest, ENTRY_POINT)
        cfg = (load_config(seg.config, overrides) if seg.config
               else load_config(args.config, {**first_overrides, **overrides}))
        specs.append(ModelSpec(cfg, seg.layer or args.layer))
    if not args.list_layers:
        if args.image is None and args.index is None:
            raise VisualizeError("give the input: --image FILE or --index N (an image of the config's dataset)")
        if not specs[0].layer:
            raise VisualizeError("give the layer: --layer NAME (--list_layers prints the valid names)")
    return args, specs


# --- input and network ---------------------------------------------------------------------------------------

def dataset_images(cfg, split, index, count=1):
    """-> (float32 NCHW images index .. index+count-1 of the evaluation pipeline, DatasetInfo, description dict
    of the first)."""
    dataset, info = create_dataset(cfg, split, training=False)
    if not (0 <= index and index + count <= info.num_samples):
        raise VisualizeError(f"--index {index}{f' --images {count}' if count > 1 else ''} is outside the "
                             f"{info.num_samples} images of the {split} split of {cfg.data_dir}")
    images, labels, seen = [], [], 0
    for batch, batch_labels in dataset.create_tuple_iterator(output_numpy=True):
        start, stop = max(index - seen, 0), min(index + count - seen, len(batch))
        if start < stop:
            images.append(batch[start:stop])
            labels.append(batch_labels[start:stop])
        seen += len(batch)
        if seen >= index + count:
            label = int(labels[0][0])
            return np.concatenate(images), info, dict(
                dataset=cfg.dataset, data_dir=cfg.data_dir, split=split, index=index, label=label,
                class_name=info.class_names[label])
    raise VisualizeError(f"the {split} split of {cfg.data_dir} ended before image {index + count - 1}")


def build_eval_network(cfg, info):
    """The config's model in eval mode: -> (net, "ema" / "trained" / "random" weights, input channels).

    With ckpt_path its weights (every key and shape matched; classes and channels read off the checkpoint unless
    the config sets them); without, a seeded random init sized from the dataset (or the model's defaults)."""
    if cfg.ckpt_path:
        return model_from_checkpoint(cfg, cfg.ckpt_path)
    channels = info.in_channels if info else dataset_statistics(cfg)[0]
    default_classes = registered_model_info(cfg.model).num_classes
    sizes = Sizes(cfg.num_classes or (info.num_classes if info else default_classes), cfg.in_channels or channels)
    net = model_for_data(cfg, sizes)
    net.set_train(False)
    return net, "random", sizes.in_channels


def file_image(cfg, path, in_channels):
    """-> (float32 CHW image, description dict): an image file through the config's evaluation transforms."""
    if not os.path.isfile(path):
        raise VisualizeError(f"image file not found: {path}")
    return image_file_preprocess(cfg, in_channels)(path), dict(image=path)


def _source_tag(source):
    if "image" in source:
        return os.path.splitext(os.path.basename(source["image"]))[0]
    return f"{source['split']}{source['index']}"


def _source_text(source):
    if "image" in source:
        return source["image"]
    return f"{source['dataset']} {source['split']} #{source['index']} ({source['class_name']})"


# --- capturing a layer ---------------------------------------------------------------------------------------

def unknown_layer_message(layer, names, model):
    """An unknown --layer: the closest valid name, the children of its longest valid prefix, and every valid name
    when there are few enough to read."""
    names = [n for n in names if n]
    lines = [f"unknown layer '{layer}' in {model}"]
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.0)
    if close:
        lines[0] += f" (closest: '{close[0]}'" + "".join(f", '{c}'" for c in close[1:]) + ")"
    parts = layer.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:depth])
        children = [n for n in names if n.startswith(parent + ".") and "." not in n[len(parent) + 1:]]
        if parent in names and children:
            lines.append(f"cells in '{parent}': {', '.join(children)}")
            break
    if len(names) <= MAX_LISTED_LAYERS:
        lines.append(f"valid names: {', '.join(names)}")
    else:
        top = [n for n in names if "." not in n]
        lines.append(f"{len(names)} valid names, at the top level: {', '.join(top)}; --list_layers prints them all "
                     f"with their output shapes")
    return "\n".join(lines)


def capture_layer(net, layer, batch, model="the model"):
    """Run `batch` through `net` (PyNative) and return the output of the cell named `layer` as (N, C, H, W) numpy
    (the first call's when the cell runs more than once), with the number of calls."""
    cells = dict(net.cells_and_names())
    if not layer or layer not in cells:
        raise VisualizeError(unknown_layer_message(layer or "", list(cells), model))
    outputs = []
    handle = cells[layer].register_forward_hook(lambda cell, args, output: outputs.append(output))
    try:
        net(ms.Tensor(batch))
    finally:
        handle.remove()
    if not outputs:
        raise VisualizeError(f"layer '{layer}' of {model} did not run in the forward pass")
    output = outputs[0]
    if not isinstance(output, ms.Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, ms.Tensor) else type(output).__name__
        raise VisualizeError(f"layer '{layer}' of {model} outputs {shape}, not feature maps (N, C, H, W): choose "
                             f"a conv, BN, activation or block (--list_layers shows each output shape)")
    return output.asnumpy(), len(outputs)


def list_layers(net, batch):
    """Every named cell with its class and the shape of its (first) output for `batch`, in network order."""
    shapes, handles = {}, []
    for name, cell in net.cells_and_names():
        if not name:
            continue

        def hook(cell, args, output, name=name):
            if name not in shapes:
                shapes[name] = tuple(output.shape) if isinstance(output, ms.Tensor) else type(output).__name__
        handles.append(cell.register_forward_hook(hook))
    try:
        net(ms.Tensor(batch))
    finally:
        for handle in handles:
            handle.remove()
    return [(name, type(cell).__name__, shapes.get(name, "not run")) for name, cell in net.cells_and_names() if name]


# --- figure --------------------------------------------------------------------------------------------------

def normalise_each(maps):
    """Each map scaled to [0, 1] by its own minimum and maximum (a constant map becomes 0)."""
    maps = np.asarray(maps, np.float64)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)


def plot_feature_grid(maps, summary, path, title, max_channels=0):
    """The maps as a grid of tiles (channel number in each corner) with the summary's top pairs framed in colour
    and listed beside the grid. Draws one image, not one axes per tile, so 512 channels take a second."""
    channels, height, width = maps.shape
    shown = min(channels, max_channels) if max_channels else channels
    cols = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / cols)
    gap = max(1, round(max(height, width) / 8))
    mosaic = np.full((rows * (height + gap) + gap, cols * (width + gap) + gap), np.nan)
    tiles = normalise_each(maps[:shown])
    origin = {}
    for c in range(shown):
        top, left = gap + (c // cols) * (height + gap), gap + (c % cols) * (width + gap)
        mosaic[top:top + height, left:left + width] = tiles[c]
        origin[c] = (top, left)

    inches = min(14.0, max(4.0, 0.9 * cols))
    fig = plt.figure(figsize=(inches + 4.2, max(3.5, inches * mosaic.shape[0] / mosaic.shape[1]) + 0.8), dpi=110)
    ax = fig.add_axes([0.01, 0.02, inches / (inches + 4.2) - 0.02, 0.88])
    ax.imshow(mosaic, cmap=plt.get_cmap("gray").with_extremes(bad="white"), vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if shown <= 256:
        for c, (top, left) in origin.items():
            ax.text(left + 0.5, top + 0.5, str(c), color="yellow", fontsize=max(4, 9 - cols // 4), va="top",
                    ha="left", bbox=dict(facecolor="black", alpha=0.5, pad=0.5, linewidth=0))
    frames, legend = {}, []
    for p, pair in enumerate(summary["top_pairs"]):
        colour = PAIR_COLOURS[p % len(PAIR_COLOURS)]
        hidden = [c for c in (pair["a"], pair["b"]) if c not in origin]
        for c in (pair["a"], pair["b"]):
            if c in origin:
                inset = 0.6 * frames.get(c, 0)  # a channel in several pairs gets nested frames
                frames[c] = frames.get(c, 0) + 1
                top, left = origin[c]
                ax.add_patch(Rectangle((left - 0.5 + inset, top - 0.5 + inset), width - 2 * inset,
                                       height - 2 * inset, fill=False, edgecolor=colour, linewidth=2.2))
        note = f" (ch {', '.join(map(str, hidden))} not drawn)" if hidden else ""
        legend.append((f"ch {pair['a']} - ch {pair['b']}: {pair['similarity']:.3f}{note}", colour))
    redundancy = summary["redundancy"]
    text = [("redundancy (mean over channels of the", "black"), ("highest similarity to another one):", "black"),
            (f"{redundancy:.3f}" if redundancy is not None else "n/a (fewer than 2 live maps)", "black"),
            (f"{summary['channels']} channels, {summary['dead_channels']} all-zero", "black"), ("", "black"),
            ("most similar pairs (cosine):", "black"), *legend]
    side = fig.add_axes([inches / (inches + 4.2), 0.02, 1 - inches / (inches + 4.2), 0.88])
    side.set_axis_off()
    for i, (line, colour) in enumerate(text):
        side.annotate(line, (0.02, 1.0), xycoords="axes fraction", xytext=(0, -13 * i), textcoords="offset points",
                      color=colour, fontsize=9, va="top", ha="left", family="monospace")
    fig.suptitle(title, fontsize=10)
    replace_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


# --- one model -----------------------------------------------------------------------------------------------

def _model_tag(cfg):
    tag = cfg.model
    if cfg.ghost_ratio is not None:
        tag += f"_s{cfg.ghost_ratio}"
    if cfg.width is not None:
        tag += f"_w{cfg.width:g}"
    if cfg.ckpt_path:
        tag += "_" + os.path.splitext(os.path.basename(cfg.ckpt_path))[0]
    return tag


def _model_label(cfg):
    extras = [f"{key} {getattr(cfg, key):g}" for key in ("ghost_ratio", "width") if getattr(cfg, key) is not None]
    label = cfg.model + (f" ({', '.join(extras)})" if extras else "")
    return label + (f", {os.path.basename(cfg.ckpt_path)}" if cfg.ckpt_path else ", random weights")


def visualize(spec, args, used_stems):
    """Capture, measure and draw one model's layer; -> the report written to its JSON."""
    cfg = spec.cfg
    setup_context(cfg)  # device and seed (a random init is reproducible)
    ms.set_context(mode=ms.PYNATIVE_MODE)  # one image: hooks need PyNative, and compiling would cost more
    batch, info, source = None, None, None
    if args.index is not None:
        batch, info, source = dataset_images(cfg, args.split or cfg.val_split, args.index, args.images)
    net, kind, in_channels = build_eval_network(cfg, info)
    if args.image is not None:
        image, source = file_image(cfg, args.image, in_channels)
        batch = np.asarray(image)[None]
    if batch is None:  # --list_layers without an input
        batch = np.zeros((1, in_channels, cfg.image_size, cfg.image_size), np.float32)
    batch = np.asarray(batch, np.float32)
    if args.list_layers:
        print(f"{_model_label(cfg)}: cells and output shapes for a {tuple(batch.shape)} input")
        for name, kind_name, shape in list_layers(net, batch):
            print(f"  {name:<50} {kind_name:<22} {shape}")
        return None
    all_maps, calls = capture_layer(net, spec.layer, batch, cfg.model)
    maps = all_maps[0]
    summary = channel_redundancy(maps, args.pairs)
    over_images = None
    if len(all_maps) > 1:  # BN in eval mode: each image's maps are those it gives alone
        scores = [channel_redundancy(m, 0)["redundancy"] for m in all_maps]
        live = [r for r in scores if r is not None]
        over_images = dict(first=args.index, count=len(scores), mean=float(np.mean(live)) if live else None,
                           std=float(np.std(live)) if live else None, per_image=scores)

    os.makedirs(cfg.output_dir, exist_ok=True)
    stem = f"features_{_model_tag(cfg)}_{spec.layer}_{_source_tag(source)}"
    if stem in used_stems:  # two models of one --compare run that the name does not tell apart
        stem += f"_{len(used_stems) + 1}"
    used_stems.add(stem)
    png = os.path.join(cfg.output_dir, stem + ".png")
    title = (f"{_model_label(cfg)} - layer {spec.layer}: {maps.shape[0]} maps of {maps.shape[1]}x{maps.shape[2]}"
             f"\ninput: {_source_text(source)}")
    plot_feature_grid(maps, summary, png, title, args.max_channels)
    report = dict(model=cfg.model, ghost_ratio=cfg.ghost_ratio, width=cfg.width, ckpt_path=cfg.ckpt_path,
                  weights=kind, layer=spec.layer, layer_calls=calls, input=source,
                  map_shape=list(maps.shape), similarity="cosine of the flattened raw maps", **summary,
                  redundancy_over_images=over_images, png=png)
    write_json_atomic(os.path.join(cfg.output_dir, stem + ".json"), report)
    best = summary["top_pairs"][0] if summary["top_pairs"] else None
    score = "n/a" if summary["redundancy"] is None else f"{summary['redundancy']:.4f}"
    print(f"{_model_label(cfg)}, layer {spec.layer} ({maps.shape[0]} x {maps.shape[1]}x{maps.shape[2]}), "
          f"input {_source_text(source)}")
    if calls > 1:
        print(f"  note: the layer ran {calls} times in one forward pass; these are the maps of its first call")
    print(f"  redundancy (mean over channels of the highest cosine similarity to another): {score}"
          f"   [{summary['dead_channels']} of {summary['channels']} maps all zero]")
    if over_images is not None and over_images["mean"] is not None:
        print(f"  redundancy over images {args.index}..{args.index + len(all_maps) - 1}: mean "
              f"{over_images['mean']:.4f}, std {over_images['std']:.4f}")
    if best:
        print(f"  most similar pair: ch {best['a']} - ch {best['b']}, {best['similarity']:.4f}")
    print(f"  wrote {png} and {os.path.splitext(png)[0]}.json")
    return report


def compare_table(reports):
    """The side-by-side lines printed after a --compare run."""
    over = reports[0]["redundancy_over_images"]
    lines = ["redundancy: mean over channels of the highest cosine similarity to another channel",
             f"{'model':<48} {'layer':<32} {'maps':>12} {'zero':>5} {'redundancy':>10}"
             + (f" {'mean over ' + str(over['count']) + ' images':>22}" if over else "")]
    for r in reports:
        cfg_label = r["label"]
        shape = "x".join(map(str, r["map_shape"]))
        score = "n/a" if r["redundancy"] is None else f"{r['redundancy']:.4f}"
        line = f"{cfg_label:<48} {r['layer']:<32} {shape:>12} {r['dead_channels']:>5} {score:>10}"
        if over:
            mean, std = r["redundancy_over_images"]["mean"], r["redundancy_over_images"]["std"]
            line += f" {'n/a' if mean is None else f'{mean:.4f} +- {std:.4f}':>22}"
        lines.append(line)
    return lines


def main(argv=None):
    args, specs = parse_command_line(argv)
    reports, used_stems = [], set()
    for spec in specs:
        report = visualize(spec, args, used_stems)
        if report is not None:
            reports.append({"label": _model_label(spec.cfg), **report})
    if len(reports) > 1:
        print()
        print("\n".join(compare_table(reports)))
        path = os.path.join(specs[0].cfg.output_dir,
                            f"redundancy_compare_{_source_tag(reports[0]['input'])}.json")
        write_json_atomic(path, [{k: r[k] for k in ("label", "model", "ghost_ratio", "width", "ckpt_path",
                                                    "weights", "layer", "map_shape", "channels", "dead_channels",
                                                    "redundancy", "redundancy_over_images", "top_pairs", "png")}
                                 for r in reports])
        print(f"comparison written to {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (VisualizeError, ConfigError, DatasetError, CheckpointError, WriteError) as err:
        print(f"visualize_features.py: error: {err}", file=sys.stderr)
        sys.exit(2)
