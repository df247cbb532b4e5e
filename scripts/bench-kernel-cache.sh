#!/usr/bin/env bash
# Start-up time of `kiln serve` on a GPU backend with an empty kernel cache, then again with
# the cache the first start left: the warm-up compiles and autotunes kernels for every
# padded batch size, and the second start finds them on disk.
#
#   scripts/bench-kernel-cache.sh [BACKEND] [MODEL_REPOSITORY]      (default: wgpu models)
#
# KILN_BIN names the binary (default target/release/kiln, built with the backend's feature).
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-wgpu}
repository=${2:-models}
kiln=${KILN_BIN:-target/release/kiln}
if [ -z "${KILN_BIN:-}" ]; then
    cargo build --release --quiet -p kiln-server --features "$backend"
fi
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for start in cold warm; do
    began=$(date +%s.%N)
    "$kiln" serve --backend "$backend" --model-repository "$repository" --kernel-cache-dir "$cache" \
        --http-addr "127.0.0.1:$port" --grpc-addr 127.0.0.1:0 >/dev/null 2>&1 &
    pid=$!
    until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do
        kill -0 $pid 2>/dev/null || { echo "kiln exited" >&2; exit 1; }
        sleep 0.2
    done
    ready=$(date +%s.%N)
    kill -TERM $pid
    wait $pid || true
    printf '%s start: ready after %.1f s (kernel cache %s)\n' "$start" \
        "$(python3 -c "print($ready - $began)")" "$(du -sh "$cache" | cut -f1)"
done
