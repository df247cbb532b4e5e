"""What the peer servers share: the ONNX session and PNG decoding, so each runs exactly the
network Kiln runs, on the same images, with the same preprocessing."""

import io

import numpy as np
import onnxruntime
from PIL import Image

from lenet_onnx import preprocess


def session(path, threads):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def decode(png_bytes):
    """A 28×28 grey image from PNG bytes, as uint8 [28, 28]."""
    image = Image.open(io.BytesIO(png_bytes)).convert("L")
    if image.size != (28, 28):
        image = image.resize((28, 28), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def probabilities(sess, pngs):
    batch = preprocess(np.stack([decode(p) for p in pngs]))
    return sess.run(None, {"input": batch})[0]
