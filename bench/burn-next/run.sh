#!/usr/bin/env bash
# Burn's flex convolutions, 0.22.1 (Kiln's) against the 0.23 pre-release, on the layer shapes
# of ResNet-50 and EfficientNet-Lite0: both built, then run alternately three times each so
# background load hits both alike; prints the median of each shape's per-run medians.
#
#   bench/burn-next/run.sh
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=$PWD/target
for v in 022 023; do cargo build --release --quiet --manifest-path burn-$v/Cargo.toml; done
mkdir -p results
for run in 1 2 3; do
    for v in 022 023; do "$CARGO_TARGET_DIR/release/conv-burn-$v" > "results/v${v}_run$run.csv"; done
done
python3 summarize.py run
