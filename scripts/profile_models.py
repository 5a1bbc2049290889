"""Size and cost of registered models next to their reference figures, and the Ghost module's speed-up.

    python scripts/profile_models.py                      # every registered model at its own input size / classes
    python scripts/profile_models.py --models ghostnet_100 mobilenetv3_large_100 --latency --memory
    python scripts/profile_models.py --models ghostnet_100 --image-size 32 --num-classes 10 --in-channels 1 \
        --small-input --format json

MACs count conv and dense layers with BN unfused (src/analysis/profile.py). Memory is the peak RSS growth of one
batch-1 forward pass in a fresh process; latency the median of batch-1 graph-mode runs on this CPU.
The second table compares the paper's theoretical speed-up r_s of a Ghost module with the MAC ratio measured on
our GhostModule against the plain conv it replaces.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (before mindspore: caps oneDNN's ISA)
from src.analysis.profile import (count_macs, count_params, ghost_speedup, measure_latency,  # noqa: E402
                                  peak_forward_memory)
from src.models import create_model, list_models, model_info  # noqa: E402
from src.models.layers import GhostModule, conv2d  # noqa: E402

GHOST_RATIOS = (2, 3, 4, 5)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help="registered names (default: all)")
    parser.add_argument("--image-size", type=int, default=None, help="default: each model's input_size")
    parser.add_argument("--num-classes", type=int, default=None, help="default: each model's num_classes")
    parser.add_argument("--in-channels", type=int, default=None, help="default: each model's input channels")
    parser.add_argument("--small-input", action="store_true", help="build with small_input=True")
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--latency", action="store_true", help="measure CPU latency (graph mode, batch 1)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per model for --latency")
    parser.add_argument("--memory", action="store_true", help="measure peak forward memory (one subprocess each)")
    parser.add_argument("--ghost-layer", nargs=5, type=int, default=[128, 128, 3, 3, 28],
                        metavar=("C", "N", "K", "D", "HW"),
                        help="conv replaced by a Ghost module: in, out channels, kernel, cheap kernel, map size "
                             "(default: a 3x3 conv of ResNet-50's second stage)")
    return parser.parse_args(argv)


def profile_model(name, args):
    """One row: measured params / MACs (+ memory, latency when asked) and the registry's reference figures."""
    info = model_info(name)
    channels = info.input_size[0] if args.in_channels is None else args.in_channels
    size = info.input_size[-1] if args.image_size is None else args.image_size
    options = dict(num_classes=info.num_classes if args.num_classes is None else args.num_classes,
                   in_channels=channels)
    if args.small_input:
        options["small_input"] = True
    shape = (channels, size, size)
    net = create_model(name, **options)
    reference = info.reference
    row = dict(model=name, image_size=size, num_classes=options["num_classes"], params=count_params(net),
               macs=count_macs(net, shape),
               reference_params=reference.get("params"), reference_macs=reference.get("macs"))
    if args.memory:
        row["memory_mib"] = peak_forward_memory(name, shape, **options)
    if args.latency:
        row["latency_ms"] = measure_latency(net, shape, repeats=args.repeats)
    return row


def ghost_rows(c, n, k, d, hw):
    """Theoretical r_s and measured conv / Ghost-module MAC ratio for s in GHOST_RATIOS."""
    shape = (c, hw, hw)
    conv_macs = count_macs(conv2d(c, n, k), shape)
    rows = []
    for s in GHOST_RATIOS:
        ghost_macs = count_macs(GhostModule(c, n, kernel_size=k, ratio=s, dw_size=d), shape)
        rows.append(dict(s=s, theoretical=ghost_speedup(c, n, k, d, s), measured=conv_macs / ghost_macs,
                         conv_macs=conv_macs, ghost_macs=ghost_macs))
    return rows


def _millions(value, digits=2):
    return "-" if value is None else f"{value / 1e6:.{digits}f}M"


def _count(value):
    """Exact counts (int) in full, rounded reference figures (float, e.g. 13.0e6) in millions."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else _millions(value)


def markdown(rows, ghost, layer):
    columns = ["model", "input", "classes", "params", "ref params", "MACs", "ref MACs"]
    if "memory_mib" in rows[0]:
        columns.append("fwd memory (MiB)")
    if "latency_ms" in rows[0]:
        columns.append("CPU latency (ms)")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [r["model"], str(r["image_size"]), str(r["num_classes"]), _count(r["params"]),
                 _count(r["reference_params"]), _millions(r["macs"]), _millions(r["reference_macs"])]
        if "memory_mib" in r:
            cells.append(f"{r['memory_mib']:.1f}")
        if "latency_ms" in r:
            cells.append(f"{r['latency_ms']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\nref: the registry's figures, taken at each model's own input_size and num_classes.")

    c, n, k, d, hw = layer
    lines += ["", f"Ghost module vs the {k}x{k} conv {c}->{n} it replaces at {hw}x{hw} (cheap op {d}x{d}):", "",
              "| s | theoretical r_s | measured MAC ratio | conv MACs | Ghost MACs |", "|---|---|---|---|---|"]
    for g in ghost:
        lines.append(f"| {g['s']} | {g['theoretical']:.2f} | {g['measured']:.2f} | {_millions(g['conv_macs'])} | "
                     f"{_millions(g['ghost_macs'])} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    rows = [profile_model(name, args) for name in (args.models or list_models())]
    ghost = ghost_rows(*args.ghost_layer)
    if args.format == "json":
        c, n, k, d, hw = args.ghost_layer
        layer = dict(in_channels=c, out_channels=n, kernel=k, cheap_kernel=d, size=hw)
        print(json.dumps(dict(small_input=args.small_input, models=rows, ghost_module=dict(layer=layer, rows=ghost)),
                         indent=2))
    else:
        print(markdown(rows, ghost, args.ghost_layer))


if __name__ == "__main__":
    main()
