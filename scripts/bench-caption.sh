#!/usr/bin/env bash
# Captioning throughput: captions/s and latency at concurrency 1, 4, 16 and 64 for both
# captioners, greedy and with a beam of 3.
#
#   scripts/bench-caption.sh
#
# Writes the first 16 held-out test scenes as PNG files (the `test_scenes` example),
# copies both captioners into a temporary repository, builds the release server and load
# generator, starts `kiln serve` on a free loopback port and drives
# POST /v1/models/{model}/caption with the scenes' PNG bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
# The test images come from Debian's Fashion-MNIST.
need_packages dataset-fashion-mnist

scenes=$(mktemp -d)
repo=$(mktemp -d)
trap 'rm -rf "$scenes" "$repo"' EXIT
# The server's features, so the scene writer shares its build rather than compile another.
cargo run --release -p kiln-zoo --features flex-parallel --example test_scenes --quiet -- "$scenes" 16
for model in captioner-lstm captioner-transformer; do
    cp -r "models/$model" "$repo/$model"
done
export KILN_MODEL_REPOSITORY="$repo"
cargo build --release -p kiln-loadtest --quiet
# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh

for model in captioner-lstm captioner-transformer; do
    for beam in 1 3; do
        echo "== $model, beam_size $beam"
        ./target/release/kiln-loadtest --url "$base" --model "$model" --form caption \
            --path "/v1/models/{model}/caption?beam_size=$beam" --inputs "$scenes" \
            --concurrency 1:64:x4 --warmup-secs 2 --window-secs 3 --max-windows 4 2>/dev/null
    done
done
curl -s "$base/metrics" | grep -E '^kiln_caption_stage_batch_size_(sum|count)'
