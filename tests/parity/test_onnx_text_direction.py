"""The text-direction classifier Kiln serves through burn-onnx's generated code computes
what onnxruntime computes from the same ONNX file, on real text and on noise."""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import skimage
from skimage.transform import resize

from conftest import infer_logits

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from kiln_process import serving_folders  # noqa: E402

MODEL = ROOT / "models" / "text-direction"


@pytest.fixture(scope="module")
def kiln(tmp_path_factory):
    with serving_folders([MODEL], tmp_path_factory.mktemp("onnx")) as addresses:
        yield addresses


def text_lines():
    """Single lines of scikit-image's scanned page, cropped to the model's 1:4 aspect, upright
    and turned upside down, as the model's normalised 3×48×192 input."""
    page = skimage.data.page()  # grey, 191×384; lines about 20 pixels tall
    lines = []
    for top, bottom, left in [(12, 35, 0), (64, 83, 20), (100, 119, 50)]:
        crop = page[top:bottom, left : left + 4 * (bottom - top)]
        crop = resize(crop, (48, 192), preserve_range=True, anti_aliasing=True)
        rgb = np.repeat(crop[None], 3, axis=0).astype(np.float32)
        lines += [rgb, rgb[:, ::-1, ::-1]]
    return (np.stack(lines) / 255.0 - 0.5) / 0.5


def test_probabilities_match_onnxruntime(kiln):
    session = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    noise = np.random.default_rng(0).standard_normal((2, 3, 48, 192)).astype(np.float32)
    inputs = np.concatenate([text_lines(), noise]).astype(np.float32)
    expected = session.run(None, {"x": inputs})[0]
    # Kiln's logits are the network's log-probabilities.
    probabilities = np.exp(infer_logits(kiln["http"], "text-direction", inputs))
    assert probabilities.shape == expected.shape == (8, 2)
    assert abs(probabilities - expected).max() <= 1e-4
    # Upright text reads as 0°, the same line turned over as 180°.
    assert list(probabilities[:6].argmax(1)) == [0, 1, 0, 1, 0, 1]
