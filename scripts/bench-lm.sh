#!/usr/bin/env bash
# Language-model serving: requests/s and tokens/s at concurrency 1, 16 and 64 for the LSTM
# and the Transformer, with continuous (iteration-level) batching and with static batching.
#
#   scripts/bench-lm.sh [MAX_TOKENS]
#
# Copies both models twice into a temporary repository (`-continuous` and `-static`, the
# latter with `continuous_batching = false`), builds the release server and load generator,
# starts `kiln serve` on a free loopback port, and drives:
#   - POST /generate with the prompts of examples/prompts-en.txt, each request generating
#     exactly MAX_TOKENS tokens (default 32; `ignore_eos`), and
#   - POST /next-word with the same prompts.
set -euo pipefail
cd "$(dirname "$0")/.."

max_tokens=${1:-32}
repo=$(mktemp -d)
trap 'rm -rf "$repo"' EXIT
for model in lstm-web-en transformer-web-en; do
    for mode in continuous static; do
        cp -r "models/$model" "$repo/$model-$mode"
        if [ "$mode" = static ]; then
            sed -i 's/^continuous_batching = true/continuous_batching = false/' "$repo/$model-$mode/model.toml"
        fi
    done
done
export KILN_MODEL_REPOSITORY="$repo"
cargo build --release -p kiln-loadtest --quiet
# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh

run() {
    ./target/release/kiln-loadtest --url "$base" --model "$1" --form "$2" --max-tokens "$max_tokens" \
        --prompts examples/prompts-en.txt --warmup-secs 2 --window-secs 3 --max-windows 4 2>/dev/null
}
for model in lstm-web-en transformer-web-en; do
    for mode in continuous static; do
        echo "== $model, generate $max_tokens tokens, $mode batching"
        run "$model-$mode" generate
    done
    echo "== $model, next-word"
    run "$model-continuous" next-word
done
