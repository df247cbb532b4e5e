#!/usr/bin/env bash
# LeNet served through each protocol Kiln speaks, with the same load generator, images and
# concurrency levels: the task route with raw PNG bytes (http-binary), the Open Inference
# Protocol with JSON pixels (v2-json) and with binary tensor data (v2-binary), and gRPC
# ModelInfer (grpc).
#
#   scripts/bench-protocols.sh [CONCURRENCY_SWEEP]     (default 1:64:x4)
#
# Builds the release server and load generator, starts `kiln serve` on free loopback ports
# with the bundled models, and prints one table per form.
set -euo pipefail
cd "$(dirname "$0")/.."

sweep=${1:-1:64:x4}
cargo build --release -p kiln-loadtest --quiet
# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh

for form in http-binary v2-json v2-binary grpc; do
    echo "== $form"
    ./target/release/kiln-loadtest --url "$base" --grpc-url "$grpc_base" --model lenet-fashion \
        --form "$form" --concurrency "$sweep" 2>/dev/null
done
