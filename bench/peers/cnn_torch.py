"""Raw CNN throughput (images/s) of PyTorch and onnxruntime on the networks of Kiln's
`cargo bench -p kiln-zoo --bench cnn`: ResNet-50 (torchvision) and EfficientNet-Lite0,
224×224, batch 1, 8 and 32, with the same number of threads.

    python cnn_torch.py [--threads 1] [--seconds 10]
"""

import argparse
import io
import time

import numpy as np
import onnxruntime as ort
import torch
import torchvision

from torch_efficientnet_lite0 import STAGES, EfficientNetLite0

BATCHES = [1, 8, 32]


def random_lite0_weights():
    """A state dict of EfficientNet-Lite0's shapes (throughput does not depend on values)."""
    g = torch.Generator().manual_seed(0)
    w = {}

    def conv(name, out, inp, k):
        w[name] = torch.randn(out, inp, k, k, generator=g) * (2.0 / (inp * k * k)) ** 0.5

    def bn(name, c):
        w.update({f"{name}.weight": torch.ones(c), f"{name}.bias": torch.zeros(c),
                  f"{name}.running_mean": torch.zeros(c), f"{name}.running_var": torch.ones(c)})

    conv("_conv_stem.weight", 32, 3, 3)
    bn("_bn0", 32)
    block, channels = 0, 32
    for repeats, kernel, _stride, expand, out in STAGES:
        for _ in range(repeats):
            p, hidden = f"_blocks.{block}.", channels * expand
            if expand != 1:
                conv(p + "_expand_conv.weight", hidden, channels, 1)
                bn(p + "_bn0", hidden)
            conv(p + "_depthwise_conv.weight", hidden, 1, kernel)
            bn(p + "_bn1", hidden)
            conv(p + "_project_conv.weight", out, hidden, 1)
            bn(p + "_bn2", out)
            block, channels = block + 1, out
    conv("_conv_head.weight", 1280, channels, 1)
    bn("_bn1", 1280)
    w["_fc.weight"] = torch.randn(1000, 1280, generator=g) * 0.01
    w["_fc.bias"] = torch.zeros(1000)
    return w


def images_per_second(run, batch, seconds):
    run(batch)  # warm-up
    run(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        done += batch
    return done / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    networks = {
        "resnet50": torchvision.models.resnet50().eval(),
        "efficientnet-lite0": EfficientNetLite0(random_lite0_weights()).eval(),
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    print(f"threads={args.threads} torch={torch.__version__} onnxruntime={ort.__version__}")
    print("network,runtime,batch,images_per_second")
    for name, model in networks.items():
        onnx = io.BytesIO()
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), onnx, dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
        session = ort.InferenceSession(onnx.getvalue(), options, providers=["CPUExecutionProvider"])
        inputs = {b: np.random.default_rng(0).standard_normal((b, 3, 224, 224), np.float32)
                  for b in BATCHES}

        def run_torch(b):
            with torch.inference_mode():
                model(torch.from_numpy(inputs[b]))

        def run_ort(b):
            session.run(None, {"x": inputs[b]})

        for runtime, run in [("pytorch", run_torch), ("onnxruntime", run_ort)]:
            for b in BATCHES:
                print(f"{name},{runtime},{b},{images_per_second(run, b, args.seconds):.1f}", flush=True)


if __name__ == "__main__":
    main()
