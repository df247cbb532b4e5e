"""Start the real kiln binary on free loopback ports and wait until it is ready; shared by
the Python test suites."""

import os
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving_folders(folders, workdir):
    """A kiln serving the given model folders, linked by name into a fresh repository in
    `workdir` (a new, empty directory)."""
    repository = Path(workdir) / "repository"
    repository.mkdir()
    for folder in folders:
        os.symlink(folder, repository / Path(folder).name)
    with running_kiln(repository, Path(workdir) / "kiln.log") as addresses:
        yield addresses


@contextmanager
def running_kiln(repository, log_path, ready_timeout=120, extra_args=()):
    """Yield {"http": host:port, "grpc": host:port} of a kiln serving `repository`; its log
    goes to `log_path` and is shown if it never becomes ready."""
    binary = Path(os.environ.get("KILN_BIN", ROOT / "target" / "debug" / "kiln"))
    http_port, grpc_port = free_port(), free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--model-repository", str(repository),
                "--http-addr", f"127.0.0.1:{http_port}",
                "--grpc-addr", f"127.0.0.1:{grpc_port}",
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        ready = f"http://127.0.0.1:{http_port}/v2/health/ready"
        deadline = time.time() + ready_timeout
        while True:
            try:
                if urllib.request.urlopen(ready, timeout=1).status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError("kiln did not become ready:\n" + Path(log_path).read_text())
            time.sleep(0.2)
        yield {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
