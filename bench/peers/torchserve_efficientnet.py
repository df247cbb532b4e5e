"""TorchServe handler for EfficientNet-Lite0 in PyTorch eager mode (the definition Kiln's
parity test checks against, with the real weights): each request's image decoded and
preprocessed like Kiln does, the batch TorchServe formed run under inference mode on both
cores, the top 5 classes answered as JSON."""

import os

import torch

import photo_input
from torch_efficientnet_lite0 import EfficientNetLite0

_model, _labels = None, None


def _load(context):
    global _model, _labels
    model_dir = context.system_properties["model_dir"]
    torch.set_num_threads(2)
    weights = torch.load(os.path.join(model_dir, context.manifest["model"]["serializedFile"]), map_location="cpu")
    _model = EfficientNetLite0(weights).eval()
    _labels = [line.strip() for line in open(os.path.join(model_dir, "labels.txt"))]


def handle(data, context):
    if _model is None:
        _load(context)
    if data is None:
        return None
    images = [row.get("data") or row.get("body") for row in data]
    with torch.inference_mode():
        p = torch.softmax(_model(torch.from_numpy(photo_input.batch(images))), dim=1)
    top = torch.topk(p, 5, dim=1)
    return [
        {"predictions": [{"label": _labels[i], "index": int(i), "probability": float(v)}
                         for v, i in zip(values.tolist(), indices.tolist())]}
        for values, indices in zip(top.values, top.indices)
    ]
