"""EfficientNet-Lite0 with its real ImageNet weights (installed by scripts/fetch-weights.sh)
classifies real photos from scikit-image through Kiln's HTTP API."""

import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch

from conftest import infer_logits

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench" / "peers"))
from kiln_process import serving_folders  # noqa: E402
from torch_efficientnet_lite0 import EfficientNetLite0  # noqa: E402

MODEL = ROOT / "models" / "efficientnet-lite0"
PHOTOS = Path(skimage.__file__).parent / "data"

# Photo, content type, the expected top-1 class and classes expected among the top 5.
EXPECTED = [
    ("chelsea.png", "image/png", "tiger cat", {"tiger cat", "Egyptian cat", "tabby"}),
    ("coffee.png", "image/png", "espresso", {"espresso", "cup"}),
    ("rocket.jpg", "image/jpeg", "missile", {"missile", "projectile", "space shuttle"}),
    ("motorcycle_left.png", "image/png", "moped", {"moped", "motor scooter"}),
    # Grayscale, turned into RGB by the decoder.
    ("camera.png", "image/png", "tripod", {"tripod"}),
]

pytestmark = pytest.mark.skipif(
    not (MODEL / "weights.bpk").exists() and not os.environ.get("CI"),
    reason="weights not installed: scripts/fetch-weights.sh efficientnet-lite0",
)


@pytest.fixture(scope="module")
def kiln(tmp_path_factory):
    with serving_folders([MODEL], tmp_path_factory.mktemp("efficientnet")) as addresses:
        yield addresses


def classify(http, photo, content_type):
    request = urllib.request.Request(
        f"http://{http}/v1/models/efficientnet-lite0/classify?top_k=5",
        data=(PHOTOS / photo).read_bytes(),
        headers={"Content-Type": content_type},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return [p["label"] for p in json.load(response)["predictions"]]


@pytest.mark.parametrize("photo,content_type,top1,top5", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_classifies_real_photos(kiln, photo, content_type, top1, top5):
    labels = classify(kiln["http"], photo, content_type)
    assert labels[0] == top1, labels
    assert top5 <= set(labels), labels


def test_logits_match_pytorch_on_the_real_weights(kiln):
    weights = torch.load(MODEL / "imported.pth", map_location="cpu")
    reference = EfficientNetLite0(weights)
    image = skimage.io.imread(PHOTOS / "chelsea.png")[:224, :224]
    x = ((image.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    logits = infer_logits(kiln["http"], "efficientnet-lite0", x)
    scale = abs(expected).max()
    assert abs(logits - expected).max() <= 1e-4 * scale
