#!/usr/bin/env bash
# EfficientNet-Lite0 (ImageNet, real weights) served by Kiln beside NVIDIA Triton
# Inference Server, TorchServe and a FastAPI + onnxruntime service, on this machine's CPU,
# driven by the same load generator with the same real photos and concurrency levels.
#
#   scripts/bench-peers-cnn.sh [CONCURRENCY_SWEEP] [P99_LIMIT_MS]      (default 1:16:x4 250)
#
# - Every server decodes each photo, crops and resizes it to 224×224 the same way
#   (bench/peers/photo_input.py is Kiln's preprocessing in Python) and batches up to 16 after
#   at most 2 ms where it batches at all, Kiln's settings for this model.
# - Triton: the tritonserver binary of PyPI's nvidia-pytriton, a Python model running
#   onnxruntime, driven through the Open Inference Protocol (`v2-binary`, `grpc`) like Kiln.
# - TorchServe 0.12 (Java 17): PyTorch eager, one worker on both cores, its own dynamic
#   batching, its own route (`/predictions/{model}`) with the image as the body.
# - FastAPI + uvicorn + onnxruntime: one request at a time on Kiln's classify route shape.
# - The ONNX file is exported from the PyTorch definition that Kiln's parity test checks,
#   and checked against the running Kiln (same top-1 on every photo) before anything is
#   timed. Energy: no power meter is readable here, so images/J is estimated alike for all
#   from each server's CPU seconds (its whole process tree) at 10 W per busy core.
#
# Installs the peers into target/cnn-peers-venv on first use (made from Debian's python3,
# whose libpython the Triton Python backend stub links) and fetches the weights if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sweep=${1:-1:16:x4}
p99_limit_ms=${2:-250}
watts_per_core=10
model=efficientnet-lite0
venv=target/cnn-peers-venv
if [ ! -x "$venv/bin/torchserve" ] || ! "$venv/bin/python" -c "import yaml" 2>/dev/null; then
    if ! /usr/bin/python3 -m venv --help >/dev/null 2>&1 || [ ! -e /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 ]; then
        apt-get install -y -qq python3-venv libpython3.11
    fi
    command -v java >/dev/null || apt-get install -y -qq openjdk-17-jre-headless
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'nvidia-pytriton==0.7.0' \
        'onnxruntime==1.32.*' 'onnx==1.23.2' 'fastapi==0.165.0' 'uvicorn==0.54.0' \
        'pillow==13.0.0' 'torch==2.15.*' 'torchserve==0.12.0' 'torch-model-archiver==0.12.0' \
        'scikit-image==0.26.*' 'pyyaml==6.*'
fi
py="$venv/bin/python"
cargo build --release -p kiln-server -p kiln-loadtest --quiet
[ -f models/$model/weights.bpk ] || KILN_BIN=target/release/kiln scripts/fetch-weights.sh $model
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Real photos of several sizes, PNG and JPEG, from scikit-image.
photos="$work/photos"
mkdir -p "$photos"
skimage_data=$("$py" -c 'import os, skimage; print(os.path.dirname(skimage.__file__) + "/data")')
for photo in chelsea.png coffee.png rocket.jpg motorcycle_left.png astronaut.png; do
    cp "$skimage_data/$photo" "$photos/"
done

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rows=()
# measure NAME PID LOADTEST_ARGS...: one sweep, with the server's CPU seconds around it.
measure() {
    local name=$1 pid=$2; shift 2
    local before after
    before=$("$py" bench/peers/cpu_seconds.py "$pid")
    ./target/release/kiln-loadtest --model $model --inputs "$photos" --concurrency "$sweep" \
        --output-dir "$work/$name" "$@" 2>/dev/null | sed "s/^/$name  /"
    after=$("$py" bench/peers/cpu_seconds.py "$pid")
    rows+=("$name=$work/$name:$(awk "BEGIN {print $after - $before}")")
}
# wait_answering URL: until a photo posted there is answered.
wait_answering() {
    for _ in $(seq 600); do
        curl -sf --max-time 60 -o /dev/null -H 'content-type: image/png' --data-binary @"$photos/coffee.png" "$1" && return
        sleep 0.5
    done
    echo "nothing answered at $1" >&2; exit 1
}

# Kiln
# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh
(cd bench/peers && "../../$py" efficientnet_onnx.py "../../models/$model/imported.pth" "$work/$model.onnx" \
    --check "$base" "$photos"/*)
measure kiln-http-binary "$server" --url "$base" --form http-binary
measure kiln-v2-binary "$server" --url "$base" --form v2-binary
measure kiln-grpc "$server" --url "$base" --grpc-url "$grpc_base" --form grpc
kill "$server"; wait "$server" 2>/dev/null || true

# Triton
http_port=$(free_port); grpc_port=$(free_port)
(cd bench/peers && exec "../../$py" triton_efficientnet.py "$work/$model.onnx" "$http_port" "$grpc_port") \
    >"$work/triton.log" 2>&1 &
triton=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$http_port/v2/models/$model/ready" >/dev/null && break; sleep 0.5; done
measure triton-v2-binary "$triton" --url "http://127.0.0.1:$http_port" --form v2-binary
measure triton-grpc "$triton" --url "http://127.0.0.1:$http_port" --grpc-url "http://127.0.0.1:$grpc_port" --form grpc
kill "$triton"; wait "$triton" 2>/dev/null || true

# TorchServe
store="$work/model-store"
mkdir -p "$store"
cp models/$model/labels.txt "$work/labels.txt"
"$venv/bin/torch-model-archiver" --model-name $model --version 1 --export-path "$store" \
    --serialized-file models/$model/imported.pth --handler bench/peers/torchserve_efficientnet.py \
    --extra-files "bench/peers/photo_input.py,bench/peers/torch_efficientnet_lite0.py,$work/labels.txt"
ts_port=$(free_port)
cat > "$work/torchserve.properties" <<PROPERTIES
inference_address=http://127.0.0.1:$ts_port
management_address=http://127.0.0.1:$(free_port)
metrics_address=http://127.0.0.1:$(free_port)
disable_token_authorization=true
enable_metrics_api=false
model_store=$store
load_models=$model.mar
models={"$model": {"1": {"marName": "$model.mar", "minWorkers": 1, "maxWorkers": 1, "batchSize": 16, "maxBatchDelay": 2, "responseTimeout": 120}}}
PROPERTIES
(export PATH="$PWD/$venv/bin:$PATH"; cd "$work" && exec torchserve --foreground --ncs \
    --ts-config "$work/torchserve.properties" --model-store "$store") >"$work/torchserve.log" 2>&1 </dev/null &
torchserve=$!
wait_answering "http://127.0.0.1:$ts_port/predictions/$model"
measure torchserve "$torchserve" --url "http://127.0.0.1:$ts_port" --form http-binary --path '/predictions/{model}'
# The Java frontend and its Python workers are stopped by TorchServe's own command.
"$venv/bin/torchserve" --stop >/dev/null
wait "$torchserve" 2>/dev/null || true

# FastAPI + onnxruntime
port=$(free_port)
(cd bench/peers && exec "../../$py" fastapi_efficientnet.py "$work/$model.onnx" "$work/labels.txt" "$port") \
    >"$work/fastapi.log" 2>&1 &
fastapi=$!
wait_answering "http://127.0.0.1:$port/v1/models/$model/classify"
measure fastapi-onnxruntime "$fastapi" --url "http://127.0.0.1:$port" --form http-binary
kill "$fastapi"; wait "$fastapi" 2>/dev/null || true

echo
"$py" bench/peers/summarize.py "$watts_per_core" --p99-limit-ms "$p99_limit_ms" "${rows[@]}"
