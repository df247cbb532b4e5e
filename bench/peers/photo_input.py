"""ImageNet preprocessing as Kiln's efficientnet-lite0 folder does it (model.toml written by
scripts/fetch-weights.sh): EXIF orientation, RGB, the centre region that scaling the
shorter side to 256 would leave at 224×224 cut first and then resized (bilinear), and
(x - 127) / 128. The peer servers use it so every server does the same work per image."""

import io

import numpy as np
from PIL import Image, ImageOps

SIZE, SHORTER = 224, 256


def preprocess(image_bytes):
    """Float32 [3, 224, 224] from encoded image bytes."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(image_bytes))).convert("RGB")
    scale = SHORTER / min(image.size)
    crop = [min(max(round(SIZE / scale), 1), side) for side in image.size]
    left, top = (image.size[0] - crop[0]) // 2, (image.size[1] - crop[1]) // 2
    image = image.crop((left, top, left + crop[0], top + crop[1])).resize((SIZE, SIZE), Image.BILINEAR)
    return ((np.asarray(image, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)


def batch(images):
    """Float32 [N, 3, 224, 224] from a list of encoded images."""
    return np.stack([preprocess(b) for b in images])


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
