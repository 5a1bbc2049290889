"""Speed of the ImageNet training input pipeline next to MindCV's and timm's, on the same files and cores.

    python scripts/benchmarks/data_pipeline.py                                   # 1024 JPEGs, 3 rounds: the README figures
    python scripts/benchmarks/data_pipeline.py --images 256 --rounds 1 --json data.json
    python scripts/benchmarks/data_pipeline.py --scan_files 200000 --scan_classes 1000   # an epoch's start-up on a big folder

Generates `--images` ImageNet-sized JPEGs (500x375, 375x500, 500x333...: smooth colour fields, blotches and
noise, quality 90, about 100 KB each) under a temporary train/<class>/ folder, plus `--eval_images` more under
val/<class>/. Then, each in a fresh process and round-robin over `--rounds` (this host's speed drifts), it times
the training transforms of configs/ghostnet/ghostnet_100_imagenet.yaml (random resized crop, flip, RandAugment,
random erasing) at `--batch_size` with `--workers` workers in:
- ours: `create_dataset` of this repo;
- MindCV 0.3.0: `create_dataset(name="imagenet")` + `create_transforms(...)` + `create_loader(...)`, when mindcv
  is importable;
- timm: `create_transform` + torchvision `ImageFolder` + `DataLoader`, in the PyTorch reference environment
  (.venv-torch, or $TORCH_PYTHON) when there is one.
Each loader first pulls a few batches (imports, thread pools, file cache), then a whole epoch is timed from the
iterator's creation to its last batch. Ratios are ours over the other, of the median rounds.

`--scan_files N`: instead, what starting a training epoch costs on a folder of N empty image files in
`--scan_classes` class folders (a temporary folder, deleted afterwards), in one process, `--rounds` times each,
alternating: reading the split (listing every folder) and building the pipeline, as every epoch did before the
split was read once per run, against building the pipeline over the list read once, as every epoch after the
first does now.

Evaluation: our evaluation tensors of the val images (`create_dataset(..., training=False)`) are compared with
timm's evaluation transform of the same files (mean and max |difference|, in normalised units).
"""
import argparse
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
from scripts import reference_env  # noqa: E402  (the timm side's interpreter)
from scripts.benchmarks import harness  # noqa: E402
RECIPE = os.path.join(REPO, "configs", "ghostnet", "ghostnet_100_imagenet.yaml")
SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (333, 500))
WARMUP_BATCHES = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--images", type=int, default=1024, help="training images to generate and time")
    parser.add_argument("--eval_images", type=int, default=32, help="images to compare with timm's evaluation")
    parser.add_argument("--rounds", type=int, default=3, help="time every loader this many times, round-robin")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="worker threads / processes of every loader")
    parser.add_argument("--scan_files", type=int, default=0,
                        help="time an epoch's start-up on this many empty files instead (0: the loader comparison)")
    parser.add_argument("--scan_classes", type=int, default=1000, help="class folders of the --scan_files tree")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of one measurement
    return parser.parse_args(argv)


# ---------------------------------------------------------------- data

def natural_image(rng, width, height):
    """A photo-like RGB image: JPEG compresses it about as well as a real photo (no flat areas, no pure noise)."""
    import numpy as np
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, phase = rng.uniform(-1, 1, 3)
        image[..., c] = 128 + 60 * np.sin(a * x / 40 + b * y / 50 + phase * 6)
    blotches = np.clip(rng.normal(128, 40, (height // 16 + 1, width // 16 + 1, 3)), 0, 255).astype(np.uint8)
    image += np.asarray(Image.fromarray(blotches).resize((width, height), Image.BICUBIC), np.float32) - 128
    image += rng.normal(0, 18, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_images(root, n_train, n_val, classes, seed=0):
    """root/{train,val}/class_<k>/<j>.JPEG; image j of a split is in class j % classes."""
    import numpy as np
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        for j in range(count):
            folder = os.path.join(root, split, f"class_{j % classes:02d}")
            os.makedirs(folder, exist_ok=True)
            natural_image(rng, *SIZES[j % len(SIZES)]).save(os.path.join(folder, f"{j:05d}.JPEG"), quality=90)


# ---------------------------------------------------------------- workers (one measurement per process)

def _cpu_seconds():
    """CPU time of this process and its finished children (timm's loader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _time_epoch(make_iterator, images_of):
    """Images/s and CPU ms per image over one whole epoch, after WARMUP_BATCHES batches of a first, abandoned
    iterator. On a shared host the CPU time per image is the steadier figure."""
    iterator = make_iterator()
    for _, _ in zip(range(WARMUP_BATCHES), iterator):
        pass
    del iterator
    start, cpu, images = time.perf_counter(), _cpu_seconds(), 0
    for batch in make_iterator():
        images += images_of(batch)
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds, "cpu_ms_per_image": (_cpu_seconds() - cpu) * 1e3 / images,
            "images": images}


def _mindspore_iterator(dataset):
    return lambda: dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)


def ours_worker(spec):
    import src  # noqa: F401  (before mindspore)
    from src.config import load_config
    from src.data import create_dataset
    cfg = load_config(RECIPE, dict(data_dir=spec["data"], batch_size=spec["batch_size"],
                                   num_workers=spec["workers"], num_classes=spec["classes"]))
    if spec["kind"] == "ours_eval":
        import numpy as np
        dataset, _ = create_dataset(cfg, "val", False)
        batches = list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))
        np.save(spec["out"], np.concatenate([images for images, _ in batches]))
        return {"labels": np.concatenate([labels for _, labels in batches]).tolist()}
    dataset, _ = create_dataset(cfg, "train", True)
    return _time_epoch(_mindspore_iterator(dataset), lambda batch: len(batch[0]))


def make_empty_tree(root, files, classes):
    """root/train/class_<k>/<j>.JPEG, `files` empty files spread evenly over `classes` folders."""
    for k in range(classes):
        os.makedirs(os.path.join(root, "train", f"class_{k:04d}"))
    for j in range(files):
        open(os.path.join(root, "train", f"class_{j % classes:04d}", f"{j:07d}.JPEG"), "wb").close()


def scan_worker(spec):
    """Seconds to start an epoch's pipeline: reading the split each time (before) or over the list read once
    (after), alternating for `rounds` rounds; and the read alone."""
    import src  # noqa: F401  (before mindspore)
    from src.config import load_config
    from src.data import create_dataset, read_split
    cfg = load_config(RECIPE, dict(data_dir=spec["data"], batch_size=spec["batch_size"],
                                   num_workers=spec["workers"]))
    split = read_split(cfg, "train", True)  # the once-per-run read (also warms the file system's cache)
    times = {"read_split": [], "before": [], "after": []}
    for _ in range(spec["rounds"]):
        start = time.perf_counter()
        read_split(cfg, "train", True)
        times["read_split"].append(time.perf_counter() - start)
        start = time.perf_counter()
        create_dataset(cfg, "train", True)
        times["before"].append(time.perf_counter() - start)
        start = time.perf_counter()
        create_dataset(cfg, "train", True, data=split)
        times["after"].append(time.perf_counter() - start)
    return {"files": len(split.labels), "classes": len(split.class_names),
            **{key: {"median_s": statistics.median(values), "rounds_s": values} for key, values in times.items()}}


def mindcv_worker(spec):
    from mindcv.data import create_dataset, create_loader, create_transforms
    recipe = spec["recipe"]
    dataset = create_dataset(name="imagenet", root=spec["data"], split="train", shuffle=True,
                             num_parallel_workers=spec["workers"])
    auto_augment = recipe["auto_augment"].replace("rand-", "randaug-", 1) if recipe["auto_augment"] else None
    transforms = create_transforms("imagenet", image_resize=recipe["image_size"], is_training=True,
                                   auto_augment=auto_augment, scale=tuple(recipe["scale"]),
                                   ratio=tuple(recipe["ratio"]), hflip=recipe["hflip"],
                                   interpolation=recipe["interpolation"], re_prob=recipe["re_prob"])
    loader = create_loader(dataset, spec["batch_size"], drop_remainder=True, is_training=True,
                           num_classes=spec["classes"], transform=transforms, num_parallel_workers=spec["workers"])
    return _time_epoch(_mindspore_iterator(loader), lambda batch: len(batch[0]))


def timm_worker(spec):
    import tvshim  # noqa: F401  (before torchvision and timm)
    import torch
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder
    recipe = spec["recipe"]
    common = dict(interpolation=recipe["interpolation"], mean=recipe["mean"], std=recipe["std"])
    if spec["kind"] == "timm_eval":
        import numpy as np
        transform = create_transform(recipe["image_size"], is_training=False, crop_pct=recipe["crop_pct"], **common)
        folder = ImageFolder(os.path.join(spec["data"], "val"), transform=transform)
        np.save(spec["out"], torch.stack([image for image, _ in folder]).numpy())
        return {"labels": [label for _, label in folder.samples]}
    transform = create_transform(recipe["image_size"], is_training=True, scale=tuple(recipe["scale"]),
                                 ratio=tuple(recipe["ratio"]), hflip=recipe["hflip"],
                                 color_jitter=recipe["color_jitter"], auto_augment=recipe["auto_augment"],
                                 re_prob=recipe["re_prob"], **common)
    folder = ImageFolder(os.path.join(spec["data"], "train"), transform=transform)
    loader = torch.utils.data.DataLoader(folder, spec["batch_size"], shuffle=True, num_workers=spec["workers"],
                                         drop_last=True)
    return _time_epoch(lambda: iter(loader), lambda batch: len(batch[0]))


WORKERS = {"ours": ours_worker, "ours_eval": ours_worker, "mindcv": mindcv_worker, "timm": timm_worker,
           "timm_eval": timm_worker, "scan": scan_worker}


# ---------------------------------------------------------------- driver

def _run(python, spec, env=None):
    return harness.measure_in_process([python, os.path.abspath(__file__), "--worker", json.dumps(spec)], env)


def _recipe():
    from src.config import load_config
    from src.data import dataset_statistics
    cfg = load_config(RECIPE)
    _, mean, std = dataset_statistics(cfg)
    keys = ("image_size", "scale", "ratio", "hflip", "color_jitter", "auto_augment", "re_prob", "interpolation",
            "crop_pct")
    return {**{key: getattr(cfg, key) for key in keys}, "mean": list(mean), "std": list(std)}


def _loaders(torch_python):
    """(label, worker kind, python, env) of every loader available here."""
    loaders = [("ours", "ours", sys.executable, None)]
    if importlib.util.find_spec("mindcv") is not None:
        loaders.append(("MindCV 0.3.0", "mindcv", sys.executable, None))
    if torch_python:
        loaders.append(("timm", "timm", torch_python, reference_env.environment()))
    return loaders


def measure(args, data, classes, recipe):
    """{label: [result of each round]}: every loader once per round, in the same order each round."""
    loaders = {label: rest for label, *rest in _loaders(reference_env.interpreter())}
    spec = dict(data=data, classes=classes, batch_size=args.batch_size, workers=args.workers, recipe=recipe)
    return harness.round_robin(list(loaders), args.rounds, lambda label: _run(loaders[label][1], dict(
        spec, kind=loaders[label][0]), loaders[label][2]), describe=lambda label: f"{label:14s}")


def eval_difference(data, classes, recipe, batch_size):
    """Mean and max |our eval tensor - timm's| over the val images, or the reason it was not measured."""
    import numpy as np
    torch_python, torch_env = reference_env.interpreter(), reference_env.environment()
    if torch_python is None:
        return {"error": "no PyTorch reference environment"}
    spec = dict(data=data, classes=classes, batch_size=batch_size, workers=1, recipe=recipe)
    ours = _run(sys.executable, dict(spec, kind="ours_eval", out=os.path.join(data, "ours.npy")))
    timm = _run(torch_python, dict(spec, kind="timm_eval", out=os.path.join(data, "timm.npy")), torch_env)
    for result in (ours, timm):
        if "error" in result:
            return result
    if ours["labels"] != timm["labels"]:
        return {"error": "our val images come in another order than timm's"}
    diff = np.abs(np.load(os.path.join(data, "ours.npy")) - np.load(os.path.join(data, "timm.npy")))
    return {"mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()), "images": len(diff)}


def summary(results):
    """{label: median img/s, range, rounds} of the loaders that ran."""
    rows = {}
    for label, runs in results.items():
        good = [r for r in runs if "error" not in r]
        if not good:
            rows[label] = {"error": runs[-1]["error"]}
            continue
        values = sorted(r["images_per_s"] for r in good)
        rows[label] = {"median": statistics.median(values), "min": values[0], "max": values[-1], "rounds": values,
                       "cpu_ms_per_image": statistics.median(r["cpu_ms_per_image"] for r in good)}
    return rows


def table(rows, evaluation, args):
    ours = rows["ours"].get("median")
    lines = [f"| pipeline ({args.images} JPEGs, batch {args.batch_size}, {args.workers} workers) | img/s median "
             f"| range ({args.rounds} rounds) | ours / this | CPU ms per image |", "|---|---|---|---|---|"]
    for label, row in rows.items():
        if "error" in row:
            lines.append(f"| {label} | failed: {row['error']} | | | |")
            continue
        ratio = f"{ours / row['median']:.2f}x" if ours and label != "ours" else ""
        lines.append(f"| {label} | {row['median']:.0f} | {row['min']:.0f}-{row['max']:.0f} | {ratio} "
                     f"| {row['cpu_ms_per_image']:.2f} |")
    if "error" in evaluation:
        lines.append(f"\neval tensors vs timm: not measured ({evaluation['error']})")
    else:
        lines.append(f"\neval tensors vs timm ({evaluation['images']} images, normalised units): mean |diff| "
                     f"{evaluation['mean_abs_diff']:.4f}, max {evaluation['max_abs_diff']:.3f}")
    return "\n".join(lines)


def scan(args):
    """The --scan_files measurement -> its record; prints a table."""
    with tempfile.TemporaryDirectory(prefix="benchmark_scan_") as data:
        start = time.perf_counter()
        make_empty_tree(data, args.scan_files, args.scan_classes)
        print(f"{args.scan_files} empty files in {args.scan_classes} class folders made in "
              f"{time.perf_counter() - start:.0f} s; {os.cpu_count()} cores", flush=True)
        result = _run(sys.executable, dict(kind="scan", data=data, batch_size=args.batch_size, workers=args.workers,
                                           rounds=args.rounds))
    if "error" in result:
        raise SystemExit(f"error: {result['error']}")
    print(f"| an epoch's start-up ({result['files']} files, {result['classes']} classes, median of {args.rounds}) "
          f"| seconds |\n|---|---|\n"
          f"| before: read the split (list every folder) + build the pipeline | {result['before']['median_s']:.2f} |\n"
          f"| after: build the pipeline over the list read once | {result['after']['median_s']:.2f} |\n"
          f"| the read alone (once per run now) | {result['read_split']['median_s']:.2f} |")
    return {"scan": result, "args": vars(args)}


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        harness.report(WORKERS[spec["kind"]](spec))
        return
    from src.atomic_files import write_json_atomic
    if args.scan_files:
        record = scan(args)
        if args.json:
            write_json_atomic(args.json, record, indent=2)
        return
    classes = max(1, min(10, args.images))
    recipe = _recipe()
    with tempfile.TemporaryDirectory(prefix="benchmark_data_") as data:
        start = time.perf_counter()
        make_images(data, args.images, args.eval_images, classes)
        print(f"{args.images} + {args.eval_images} JPEGs generated in {time.perf_counter() - start:.0f} s; "
              f"{os.cpu_count()} cores", flush=True)
        rows = summary(measure(args, data, classes, recipe))
        evaluation = eval_difference(data, classes, recipe, args.batch_size) if args.eval_images else \
            {"error": "--eval_images 0"}
    print(table(rows, evaluation, args))
    if args.json:
        write_json_atomic(args.json, {"loaders": rows, "eval": evaluation, "args": vars(args)}, indent=2)


if __name__ == "__main__":
    main()
