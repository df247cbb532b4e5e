#!/usr/bin/env bash
# Training time: short `kiln train` runs of each kind of model (LeNet, both captioners, a
# Transformer and an LSTM language model), each binary in turn per run so that builds
# compared share the machine's good and bad stretches. Prints wall-clock, user and system
# CPU seconds, peak memory and the run's last epoch line (its loss: the same data and seed
# give the same one on every build, so a change of speed is not a change of work).
#
#   [ROUNDS=2] scripts/bench-training.sh [KILN_BINARY...]
#
# Without binaries it builds and times this checkout's (`--features train`). To compare
# with an older build, build it first (see BENCHMARKS.md) and pass both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
# LeNet and the captioners train on Debian's Fashion-MNIST, the language models on the
# World English Bible.
need_packages dataset-fashion-mnist sword-text-web

binaries=("$@")
if [ ${#binaries[@]} = 0 ]; then
    cargo build --release -p kiln-server --features train --quiet
    binaries=(target/release/kiln)
fi
rounds=${ROUNDS:-2}
runs=(
    "lenet --epochs 1"
    "captioner-transformer --encoder-norm --encoder-grid-layers 2 --scenes 4000 --epochs 1"
    "captioner-lstm --encoder-norm --scenes 4000 --epochs 1"
    "transformer-web-en --max-steps 150"
    "lstm-web-en --max-steps 150"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "| run | binary | round | wall s | user s | system s | peak MiB | last line |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for run in "${runs[@]}"; do
    read -r -a args <<<"$run"
    for round in $(seq "$rounds"); do
        for binary in "${binaries[@]}"; do
            rm -rf "$work/out"
            /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
                "$binary" train "${args[@]}" --out "$work/out" >"$work/log" 2>&1 ||
                { cat "$work/log" >&2; exit 1; }
            read -r wall user system peak_kb <"$work/time"
            last=$(grep -E '^(epoch|step)' "$work/log" | tail -1 | tr -s ' ' | cut -c1-80)
            echo "| $run | $binary | $round | $wall | $user | $system | $((peak_kb / 1024)) | $last |"
        done
    done
done
