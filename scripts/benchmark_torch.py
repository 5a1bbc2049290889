"""The PyTorch (timm, eager) and ONNX Runtime half of scripts/benchmark.py: one workload per process.

Runs under the reference environment's interpreter (.venv-torch, see tests/torch_reference.py), which has no
MindSpore; it imports nothing from this repo. Prints one JSON line with the measurement.

    .venv-torch/bin/python scripts/benchmark_torch.py --runtime pytorch --workload train_32 --model ghostnet_100
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import tvshim  # noqa: F401  (before timm: see scripts/reference_env/tvshim.py)
import numpy as np
import timm
import torch


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def timed(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", choices=("pytorch", "onnxruntime"), required=True)
    parser.add_argument("--workload", required=True, help="JSON: batch, channels, size, classes, train")
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    work = json.loads(args.workload)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    net = timm.create_model(args.model, num_classes=work["classes"], in_chans=work["channels"])
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (work["batch"], work["channels"], work["size"], work["size"])).astype(np.float32))
    result = {"threads": args.threads, "version": torch.__version__}

    if work["train"]:
        net.train()
        labels = torch.from_numpy(np.random.default_rng(1).integers(0, work["classes"], work["batch"]))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(x), labels).backward()
            optimizer.step()
        seconds = timed(step, args.repeats, args.warmup)
        result.update(images_per_s=work["batch"] / seconds, step_ms=seconds * 1e3)
    elif args.runtime == "pytorch":
        net.eval()
        with torch.inference_mode():
            seconds = timed(lambda: net(x), args.repeats, args.warmup)
        result.update(latency_ms=seconds * 1e3)
    else:
        import onnxruntime as ort
        net.eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            torch.onnx.export(net, (x,), path, input_names=["image"], output_names=["logits"], dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            start = time.perf_counter()
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            result["compile_s"] = time.perf_counter() - start
        feed = {"image": x.numpy()}
        seconds = timed(lambda: session.run(None, feed), args.repeats, args.warmup)
        result.update(latency_ms=seconds * 1e3, version=ort.__version__)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
