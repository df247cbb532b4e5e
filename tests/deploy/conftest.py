"""Containers of the image under test (KILN_IMAGE, kiln:local by default), started with
`docker run` and always removed afterwards."""

import json
import os
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("KILN_IMAGE", "kiln:local")


def docker(*args, check=True, timeout=300):
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True,
                          timeout=timeout).stdout.strip()


def inspect(container, template):
    return docker("inspect", "--format", template, container)


def published(container, port):
    """The loopback host:port that the container's `port` is published on."""
    mapping = docker("port", container, f"{port}/tcp").splitlines()[0]
    return "127.0.0.1:" + mapping.rsplit(":", 1)[1]


def wait_healthy(container, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = json.loads(inspect(container, "{{json .State}}"))
        if not state["Running"]:
            raise AssertionError(f"container exited: {docker('logs', container, check=False)}")
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(1)
    raise AssertionError(f"not healthy after {timeout} s: {docker('logs', container, check=False)}")


@contextmanager
def kiln_container(*run_args, args=(), http_port=8000):
    """A started, healthy Kiln container (`docker run` options, then `kiln serve` arguments);
    yields its name and the loopback address its HTTP port is published on."""
    container = docker("run", "--detach", "--publish", f"127.0.0.1::{http_port}",
                       "--health-interval", "1s", *run_args, IMAGE, *args)
    try:
        wait_healthy(container)
        yield container, published(container, http_port)
    finally:
        docker("rm", "--force", container, check=False)


@pytest.fixture(scope="session", autouse=True)
def image_exists():
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        pytest.fail(f"no image {IMAGE}: build it with scripts/docker-build.sh")


def post(url, body, content_type, timeout=60):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()
