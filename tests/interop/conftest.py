"""A real Kiln server for the interop tests: the kiln binary serving LeNet and a GRU
language model from the bundled repository, on free loopback ports."""

import gzip
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["lenet-fashion", "gru-web-en"]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kiln():
    binary = Path(os.environ.get("KILN_BIN", ROOT / "target" / "debug" / "kiln"))
    repository = tempfile.mkdtemp(prefix="kiln-interop-")
    for model in MODELS:
        os.symlink(ROOT / "models" / model, Path(repository) / model)
    http_port, grpc_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            str(binary),
            "serve",
            "--model-repository", repository,
            "--http-addr", f"127.0.0.1:{http_port}",
            "--grpc-addr", f"127.0.0.1:{grpc_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ready = f"http://127.0.0.1:{http_port}/v2/health/ready"
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(ready, timeout=1).status == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError("kiln did not become ready: " + process.stderr.read().decode())
        time.sleep(0.2)
    yield {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"}
    process.terminate()
    process.wait(timeout=60)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The first 64 test images (uint8, N×28×28) and their labels."""
    with gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[:64], labels[:64]
