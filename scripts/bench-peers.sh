#!/usr/bin/env bash
# LeNet-5 on Fashion-MNIST served by Kiln beside NVIDIA Triton Inference Server and a
# FastAPI + onnxruntime service, on this machine's CPU, driven by the same load generator
# with the same PNG images and concurrency levels.
#
#   scripts/bench-peers.sh [CONCURRENCY_SWEEP]          (default 1:64:x4)
#
# - The peers run the very network Kiln runs: `kiln export` writes the weights, and
#   bench/peers/lenet_onnx.py rebuilds the graph in ONNX and checks onnxruntime against a
#   running Kiln on 64 test images (max |diff| < 1e-4, same top-1) before anything is timed.
# - Triton is the tritonserver binary that PyPI's nvidia-pytriton ships, serving a Python
#   model (PNG decode + onnxruntime) with dynamic batching up to 64; it is driven through
#   the Open Inference Protocol (`v2-binary` and `grpc` forms), like Kiln.
# - FastAPI + uvicorn + onnxruntime serves Kiln's classify route shape (`http-binary`),
#   one request at a time in one worker, as such services usually run.
# - Every server decodes the PNG itself. Energy: no power meter is readable here, so
#   images/J is estimated alike for all, from each server's CPU seconds (its whole process
#   tree) at 10 W per busy core, Kiln's own fallback estimate.
#
# Installs the peers into target/peers-venv on first use, made from Debian's python3: the
# Python backend stub that tritonserver starts links Debian's libpython3.11, and must find
# the standard library of that same build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
# The test images come from Debian's Fashion-MNIST.
need_packages dataset-fashion-mnist

sweep=${1:-1:64:x4}
watts_per_core=10
venv=target/peers-venv
if [ ! -x "$venv/bin/python" ]; then
    if ! /usr/bin/python3 -m venv --help >/dev/null 2>&1 || [ ! -e /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 ]; then
        apt-get install -y -qq python3-venv libpython3.11
    fi
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'nvidia-pytriton==0.7.0' \
        'onnxruntime==1.32.0' 'onnx==1.23.2' 'fastapi==0.165.0' 'uvicorn==0.54.0' \
        'pillow==13.0.0' 'tritonclient[http]==2.73.0'
fi
py="$venv/bin/python"
cargo build --release -p kiln-server -p kiln-loadtest --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./target/release/kiln export lenet-fashion --safetensors "$work/lenet.safetensors"

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
    for _ in $(seq 600); do curl -sf "$1/v2/models/lenet-fashion/ready" >/dev/null && return; sleep 0.2; done
    echo "no server at $1" >&2; exit 1
}
rows=()
# measure NAME PID LOADTEST_ARGS...: one sweep, with the server's CPU seconds around it.
measure() {
    local name=$1 pid=$2; shift 2
    local before after
    before=$("$py" bench/peers/cpu_seconds.py "$pid")
    ./target/release/kiln-loadtest --model lenet-fashion --concurrency "$sweep" \
        --output-dir "$work/$name" "$@" 2>/dev/null | sed "s/^/$name  /"
    after=$("$py" bench/peers/cpu_seconds.py "$pid")
    rows+=("$name=$work/$name:$(awk "BEGIN {print $after - $before}")")
}

# Kiln
# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh
PYTHONPATH=bench/peers "$py" bench/peers/lenet_onnx.py "$work/lenet.safetensors" "$work/lenet.onnx" --check "$base"
measure kiln-http-binary "$server" --url "$base" --form http-binary
measure kiln-v2-binary "$server" --url "$base" --form v2-binary
measure kiln-grpc "$server" --url "$base" --grpc-url "$grpc_base" --form grpc
kill "$server"; wait "$server" 2>/dev/null || true

# Triton
http_port=$(free_port); grpc_port=$(free_port)
(cd bench/peers && exec "../../$py" triton_lenet.py "$work/lenet.onnx" "$http_port" "$grpc_port") >"$work/triton.log" 2>&1 &
triton=$!
wait_ready "http://127.0.0.1:$http_port"
measure triton-v2-binary "$triton" --url "http://127.0.0.1:$http_port" --form v2-binary
measure triton-grpc "$triton" --url "http://127.0.0.1:$http_port" --grpc-url "http://127.0.0.1:$grpc_port" --form grpc
kill "$triton"; wait "$triton" 2>/dev/null || true

# FastAPI + onnxruntime, one uvicorn worker: with `--workers 2`, uvicorn 0.54 answered every
# request here ~44 ms late whatever the load, so one worker is the better of the two.
port=$(free_port)
(cd bench/peers && exec "../../$py" fastapi_lenet.py "$work/lenet.onnx" "$port" 1) >"$work/fastapi.log" 2>&1 &
fastapi=$!
for _ in $(seq 300); do
    curl -sf -o /dev/null -H 'content-type: image/png' --data-binary @examples/images/shirt.png \
        "http://127.0.0.1:$port/v1/models/lenet-fashion/classify" && break
    sleep 0.2
done
measure fastapi-onnxruntime "$fastapi" --url "http://127.0.0.1:$port" --form http-binary
kill "$fastapi"; wait "$fastapi" 2>/dev/null || true

echo
"$py" bench/peers/summarize.py "$watts_per_core" "${rows[@]}"
