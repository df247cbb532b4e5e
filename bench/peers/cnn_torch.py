"""Raw CNN throughput (images/s) of PyTorch and onnxruntime on the networks of Kiln's
`cargo bench -p kiln-zoo --bench cnn`: ResNet-50 and GoogLeNet (torchvision) and
EfficientNet-Lite0, 224×224, batch 1, 8 and 32, with the same number of threads.

    python cnn_torch.py [--threads 1] [--seconds 10] [--batches 1,8,32]
"""

import argparse
import io
import time

import numpy as np
import onnxruntime as ort
import torch
import torchvision

from torch_efficientnet_lite0 import EfficientNetLite0, random_lite0_weights

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
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    networks = {
        "resnet50": torchvision.models.resnet50().eval(),
        # Without the auxiliary classifiers, as Kiln's GoogLeNet (inference needs none).
        "googlenet": torchvision.models.googlenet(aux_logits=False, init_weights=True).eval(),
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
                  for b in batches}

        def run_torch(b):
            with torch.inference_mode():
                model(torch.from_numpy(inputs[b]))

        def run_ort(b):
            session.run(None, {"x": inputs[b]})

        for runtime, run in [("pytorch", run_torch), ("onnxruntime", run_ort)]:
            for b in batches:
                print(f"{name},{runtime},{b},{images_per_second(run, b, args.seconds):.1f}", flush=True)


if __name__ == "__main__":
    main()
