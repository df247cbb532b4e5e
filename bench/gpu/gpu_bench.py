"""One-shot GPU benchmark: Kiln serving LeNet-5, ResNet-50, GoogLeNet and EfficientNet-Lite0
on each GPU backend (driven over HTTP by Kiln's load generator at concurrency 1..256), beside
PyTorch eager on the same GPU, networks and weights (batch 1..256). Board power is sampled from NVML
(nvidia-smi) during every measurement; img/s, p99 and img/s/W land in one CSV and one JSON.

    python gpu_bench.py --kiln BIN --loadtest BIN --out DIR [--backends wgpu,cuda]
                        [--levels 1,4,16,64,256] [--seconds 2] [--budget 420]

Levels left when the budget runs out are skipped and reported (Kiln's backends share 80 % of
it, PyTorch the rest), so a one-shot run on a lent GPU ends in time.

Kiln's p99 is a request's latency (HTTP, decoding, queueing, batching); PyTorch's is one
batch's latency on tensors already in memory, so PyTorch's side is a ceiling, not a peer
server. Without an NVIDIA GPU it still runs (PyTorch on CPU, no power) to check the plumbing.
"""

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import placed, write_repository  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class PowerSampler:
    """Board power of GPU `index`, every 100 ms, from `nvidia-smi`; None where there is none."""

    def __init__(self, index=0):
        self.samples = []
        self.process = None
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=power.draw", "--format=csv,noheader,nounits",
                 "-lms", "100", "-i", str(index)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            try:
                self.samples.append((time.monotonic(), float(line.strip())))
            except ValueError:
                pass

    def mean_watts(self, start, end):
        window = [w for t, w in self.samples if start <= t <= end]
        return sum(window) / len(window) if window else None

    def stop(self):
        if self.process:
            self.process.terminate()


def gpu_name():
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "unknown"
    return "none (no nvidia-smi)"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base, process, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kiln exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"kiln was not ready after {timeout} s")


def log_lines(path, start):
    """The lines Kiln wrote to `path` after byte `start`."""
    with open(path, errors="replace") as f:
        f.seek(start)
        return f.read().splitlines()


def opened_device(path, start):
    """The device Kiln's log names in its "GPU device opened" line."""
    for line in log_lines(path, start):
        if "GPU device opened" in line and "device=" in line:
            return line.split("device=", 1)[1].split(" kernel_cache=")[0].strip()
    return "an unnamed device"


def why_kiln_stopped(lines):
    """The server's own words on why it stopped: the last `Error:` with its causes ("cannot
    start the cuda backend / Caused by: no such device: ..."), else its last ERROR lines."""
    starts = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    if not starts:
        return [line for line in lines if " ERROR " in line][-2:]
    said = []
    for line in lines[starts[-1]:]:
        if line.startswith("Stack backtrace"):
            break
        if line.strip():
            said.append(line.strip())
    return said


def row(model, runtime, level, img_s, p99_ms, watts):
    return {"model": model, "runtime": runtime, "batch_or_concurrency": level,
            "img_per_s": round(img_s, 1), "p99_ms": round(p99_ms, 2),
            "watts": None if watts is None else round(watts, 1),
            "img_per_s_per_w": None if not watts else round(img_s / watts, 2)}


def out_of_time(deadline, what):
    """Whether `deadline` (monotonic seconds) has passed; `what` is reported as skipped."""
    if time.monotonic() < deadline:
        return False
    print(f"skipped {what}: its share of the time budget is spent", flush=True)
    return True


def bench_kiln(args, backend, repository, power, log, deadline):
    http, grpc = free_port(), free_port()
    base = f"http://127.0.0.1:{http}"
    started = time.monotonic()
    log.flush()
    log_start = log.tell()  # the server writes through the same open file
    server = subprocess.Popen(
        [args.kiln, "serve", "--backend", backend, "--model-repository", str(repository),
         "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}",
         "--kernel-cache-dir", str(args.out / "kernel-cache")],
        stdout=log, stderr=subprocess.STDOUT)
    rows = []
    try:
        wait_ready(base, server, max(1.0, min(args.ready_timeout, deadline - time.monotonic())))
        device = opened_device(args.out / "kiln.log", log_start)
        print(f"kiln {backend}: ready in {time.monotonic() - started:.1f} s on {device}", flush=True)
        # On a machine with an NVIDIA GPU, wgpu falling back to a software rasteriser would
        # measure the CPU; without one (a plumbing check on lavapipe) it is what there is.
        if backend == "wgpu" and shutil.which("nvidia-smi") and "nvidia" not in device.lower():
            raise RuntimeError(f"wgpu opened {device}, not the NVIDIA GPU: is NVIDIA's Vulkan "
                               "driver (nvidia_icd.json) visible to the Vulkan loader?")
        for model in args.models:
            for level in args.levels:
                if out_of_time(deadline, f"kiln-{backend} {model} at {level}"):
                    continue
                out = args.out / "loadtest" / f"{backend}-{model}-{level}"
                start = time.monotonic()
                subprocess.run(
                    [args.loadtest, "--url", base, "--model", model, "--inputs",
                     str(ROOT / "examples" / "images"), "--concurrency", str(level),
                     "--warmup-secs", "1", "--window-secs", str(args.seconds), "--max-windows", "2",
                     "--output-dir", str(out)],
                    check=True, stdout=subprocess.DEVNULL, stderr=log)
                end = time.monotonic()
                result = json.loads((out / "results.json").read_text())[0]
                if result["measured_errors"]:
                    raise RuntimeError(f"{model} at {level}: {result['measured_errors']} errors")
                r = row(model, f"kiln-{backend}", level, result["throughput"],
                        result["latency"]["p99_ms"], power.mean_watts(start + 1, end))
                print(r, flush=True)
                rows.append(r)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return rows


def bench_torch(args, networks, power, deadline):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for model in args.models:
        module, shape = networks[model]
        module = placed(module, device, torch.float32)
        for batch in args.levels:
            if out_of_time(deadline, f"PyTorch {model} at {batch}"):
                continue
            x = torch.randn(batch, *shape, device=device)
            latencies = []
            with torch.inference_mode():
                for _ in range(3):
                    module(x)
                sync(device)
                start = time.monotonic()
                while time.monotonic() - start < args.seconds or len(latencies) < 5:
                    t = time.perf_counter()
                    module(x)
                    sync(device)
                    latencies.append(time.perf_counter() - t)
            end = time.monotonic()
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
            img_s = batch * len(latencies) / sum(latencies)
            r = row(model, f"pytorch-eager-{device}", batch, img_s, p99, power.mean_watts(start, end))
            print(r, flush=True)
            rows.append(r)
    return rows


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kiln", required=True)
    parser.add_argument("--loadtest", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backends", default="wgpu,cuda")
    parser.add_argument("--models", default="lenet-fashion,resnet-50,googlenet,efficientnet-lite0")
    parser.add_argument("--levels", default="1,4,16,64,256")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--ready-timeout", type=float, default=150.0)
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which remaining levels are skipped, so the whole "
                             "run ends within 8 minutes")
    args = parser.parse_args()
    args.models = args.models.split(",")
    args.levels = [int(v) for v in args.levels.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    repository = args.out / "repository"
    shutil.rmtree(repository, ignore_errors=True)
    networks = write_repository(args.kiln, repository, args.models)
    power = PowerSampler()
    rows = []
    with open(args.out / "kiln.log", "w") as log:
        # Kiln's backends share 80 % of the budget equally; PyTorch gets the rest.
        backends = [b for b in args.backends.split(",") if b]
        for i, backend in enumerate(backends):
            deadline = began + args.budget * 0.8 * (i + 1) / len(backends)
            try:
                rows += bench_kiln(args, backend, repository, power, log, deadline)
            except (RuntimeError, subprocess.CalledProcessError) as e:
                log.flush()
                said = why_kiln_stopped(log_lines(args.out / "kiln.log", 0))
                print(f"kiln {backend} failed: {e}", *said, "(see kiln.log)", sep="\n  ",
                      flush=True)
    rows += bench_torch(args, networks, power, began + args.budget)
    power.stop()

    with open(args.out / "gpu-bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "gpu-bench.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"),
        "gpu": gpu_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "seconds_per_level": args.seconds,
        "wall_seconds": round(time.monotonic() - began, 1),
        "rows": rows,
    }, indent=2))
    print(f"wrote {args.out}/gpu-bench.csv and gpu-bench.json in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
