"""EfficientNet-Lite0 with its real ImageNet weights in ONNX, for the peer servers: exported
from the PyTorch definition Kiln's parity test checks against, then checked against a
running Kiln on real photos before anything is timed: onnxruntime within 1e-4 of PyTorch,
and Kiln's top-5 probabilities within 0.05 of onnxruntime's. PIL's bilinear resize and
the image crate's triangle filter weigh edge pixels a little differently, which moves a
probability by a few hundredths where classes are close (the cat photo: tabby, tiger cat,
Egyptian cat), so the top-1 classes agree wherever they are not a near-tie.

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


PROBABILITY_TOLERANCE = 0.05


def kiln_top5(base, path):
    """(class index, probability) of Kiln's five best classes for the photo."""
    request = urllib.request.Request(
        f"{base}/v1/models/efficientnet-lite0/classify?top_k=5",
        data=path.read_bytes(),
        headers={"Content-Type": CONTENT_TYPES[path.suffix.lower()]},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return [(p["index"], p["probability"]) for p in json.load(response)["predictions"]]


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
    probabilities = photo_input.softmax(ours)
    worst, same_top1 = 0.0, 0
    for photo, row in zip(args.photos, probabilities):
        kiln = kiln_top5(args.check, photo)
        gap = max(abs(p - float(row[i])) for i, p in kiln)
        assert gap <= PROBABILITY_TOLERANCE, f"{photo.name}: Kiln {kiln}, onnxruntime differs by {gap}"
        worst, same_top1 = max(worst, gap), same_top1 + (kiln[0][0] == int(row.argmax()))
    print(f"efficientnet-lite0.onnx: max |onnxruntime - PyTorch| {diff:.1e}; Kiln's top-5 "
          f"probabilities within {worst:.4f} of onnxruntime's; same top-1 on {same_top1} of "
          f"{len(args.photos)} photos")


if __name__ == "__main__":
    main()
