"""A real Kiln server for the interop tests (tritonclient, openai): the kiln binary serving LeNet, a GRU
language model and the Transformer captioner from the bundled repository, on free
loopback ports."""

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from kiln_process import serving_folders  # noqa: E402

MODELS = ["lenet-fashion", "gru-web-en", "captioner-transformer"]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def kiln(tmp_path_factory):
    folders = [ROOT / "models" / model for model in MODELS]
    with serving_folders(folders, tmp_path_factory.mktemp("interop")) as addresses:
        yield addresses


@pytest.fixture(scope="session")
def fashion_mnist():
    """The first 64 test images (uint8, N×28×28) and their labels."""
    with gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[:64], labels[:64]
