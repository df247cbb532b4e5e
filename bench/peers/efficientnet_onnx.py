"""EfficientNet-Lite0 with its real ImageNet weights in ONNX, for the peer servers: exported
from the PyTorch definition Kiln's parity test checks against, then checked against a
running Kiln on real photos before anything is timed (onnxruntime within 1e-4 of PyTorch,
and the same top-1 class as Kiln's classify route).

    python efficientnet_onnx.py IMPORTED.pth OUT.onnx --check KILN_BASE_URL PHOTO...
"""

import argparse
import json
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import photo_input
from torch_efficientnet_lite0 import EfficientNetLite0

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def kiln_top1(base, path):
    request = urllib.request.Request(
        f"{base}/v1/models/efficientnet-lite0/classify?top_k=1",
        data=path.read_bytes(),
        headers={"Content-Type": CONTENT_TYPES[path.suffix.lower()]},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["predictions"][0]["index"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("out")
    parser.add_argument("--check", required=True, help="base URL of a Kiln serving efficientnet-lite0")
    parser.add_argument("photos", nargs="+", type=Path)
    args = parser.parse_args()

    model = EfficientNetLite0(torch.load(args.weights, map_location="cpu")).eval()
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), args.out, dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "n"}})
    session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    x = photo_input.batch([p.read_bytes() for p in args.photos])
    ours = session.run(None, {"input": x})[0]
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(ours - reference).max())
    assert diff <= 1e-4 * float(np.abs(reference).max()), f"onnxruntime differs from PyTorch by {diff}"
    kiln = [kiln_top1(args.check, p) for p in args.photos]
    assert kiln == list(ours.argmax(axis=1)), f"top-1: Kiln {kiln}, onnxruntime {list(ours.argmax(axis=1))}"
    print(f"efficientnet-lite0.onnx: max |onnxruntime - PyTorch| {diff:.1e}, "
          f"top-1 equal to Kiln's on {len(kiln)} photos")


if __name__ == "__main__":
    main()
