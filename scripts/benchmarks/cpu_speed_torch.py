"""The PyTorch (timm) and ONNX Runtime half of scripts/benchmarks/cpu_speed.py: one measurement per process.

Runs under the reference environment's interpreter (scripts/reference_env), which has no MindSpore; it imports
nothing of this repo but the benchmark harness. Prints one JSON line with the measurement, or with `--serve` serves
the call for cpu_speed.py's lockstep against PyTorch.

PyTorch settings, each what a PyTorch user can switch on in a line: `eager` (NCHW), `channels_last` (the model
and its input in NHWC memory order, PyTorch's CPU advice for convolution networks), `compile` (torch.compile,
its default mode) and `compile_channels_last` (both). The first call (torch.compile's compile, oneDNN's kernel
choice) is timed apart as compile_s. ONNX Runtime runs timm's own ONNX export, or `--onnx FILE` (this repo's).

    .venv-torch/bin/python scripts/benchmarks/cpu_speed_torch.py --runtime pytorch --setting channels_last \
        --workload '{"batch": 128, "channels": 1, "size": 32, "classes": 10, "train": true}'
"""
import argparse
import json
import os
import tempfile

import tvshim  # noqa: F401  (before timm: see scripts/reference_env/tvshim.py)
import numpy as np
import timm
import torch

import harness  # this script's folder: scripts/benchmarks

SETTINGS = ("eager", "channels_last", "compile", "compile_channels_last")


def _network(args, work, x):
    """timm's model and the input in the setting's memory order, compiled if the setting says so."""
    net = timm.create_model(args.model, num_classes=work["classes"], in_chans=work["channels"])
    net.train(work["train"])
    if "channels_last" in args.setting:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return net, (torch.compile(net) if args.setting.startswith("compile") else net), x


def pytorch_call(args, work, x):
    """The call a PyTorch measurement times: a training step (SGD momentum, label-smoothed cross-entropy) or a
    forward in inference mode; its first call compiles under torch.compile."""
    net, run_net, x = _network(args, work, x)
    if work["train"]:
        labels = torch.from_numpy(np.random.default_rng(1).integers(0, work["classes"], work["batch"]))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(run_net(x), labels).backward()
            optimizer.step()
        return step

    def infer():
        with torch.inference_mode():
            return run_net(x)
    return infer


def pytorch(args, work, x):
    call = pytorch_call(args, work, x)
    _, compile_s = harness.timed_once(call)
    seconds = harness.median_seconds(call, args.repeats, args.warmup)
    if work["train"]:
        return {"compile_s": compile_s, "images_per_s": work["batch"] / seconds, "step_ms": seconds * 1e3}
    return {"compile_s": compile_s, "latency_ms": seconds * 1e3}


def onnxruntime(args, work, x):
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx
        if path is None:
            path = os.path.join(tmp, "model.onnx")
            net = timm.create_model(args.model, num_classes=work["classes"], in_chans=work["channels"]).eval()
            torch.onnx.export(net, (x,), path, input_names=["image"], output_names=["logits"], dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session, compile_s = harness.timed_once(
            lambda: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]))
    feed = {session.get_inputs()[0].name: x.numpy()}
    seconds = harness.median_seconds(lambda: session.run(None, feed), args.repeats, args.warmup)
    return {"compile_s": compile_s, "latency_ms": seconds * 1e3, "version": ort.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", choices=("pytorch", "onnxruntime"), required=True)
    parser.add_argument("--setting", choices=SETTINGS, default="eager", help="PyTorch only")
    parser.add_argument("--onnx", default=None, help="ONNX Runtime: this file instead of timm's export")
    parser.add_argument("--workload", required=True, help="JSON: batch, channels, size, classes, train")
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--serve", action="store_true",
                        help="PyTorch only: serve the call for cpu_speed.py --lockstep_pytorch (harness.serve)")
    args = parser.parse_args()
    work = json.loads(args.workload)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (work["batch"], work["channels"], work["size"], work["size"])).astype(np.float32))
    if args.serve:
        harness.serve(pytorch_call(args, work, x), args.warmup)
        return
    result = pytorch(args, work, x) if args.runtime == "pytorch" else onnxruntime(args, work, x)
    harness.report({"threads": args.threads, "version": torch.__version__, **result,
                    "peak_rss_mib": harness.peak_rss_mib()})


if __name__ == "__main__":
    main()
