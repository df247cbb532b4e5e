#!/usr/bin/env bash
# The step loops under load, in one server run:
#   1. continuous against static batching for the Transformer language model (tokens/s)
#      and both captioners (captions/s, greedy), at concurrency 16 and 64;
#   2. the Transformer language model at concurrency 64 without and with a step target
#      (TARGET_MS, default 10: a bucket bound of kiln_inter_token_latency_seconds, so the
#      share of gaps within it is exact), reporting tokens/s, the share of inter-token
#      gaps within the target and the p99 gap, both read from Kiln's own histogram.
#
#   scripts/bench-step-loops.sh            (PARTS="static target" by default: both)
#
# Copies the models into a temporary repository (`-continuous`, `-static`, `-target`),
# builds the release server and load generator (or runs KILN_BIN), starts `kiln serve` on
# a free loopback port and drives it with `kiln-loadtest`, the load generator on a core of
# its own (scripts/lib/pin.sh; PIN=0 shares the cores).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
need_packages dataset-fashion-mnist

target_ms=${TARGET_MS:-10}
parts=${PARTS:-static target}
max_tokens=${MAX_TOKENS:-32}
repo=$(mktemp -d)
scenes=$(mktemp -d)
trap 'rm -rf "$repo" "$scenes"' EXIT
cargo run --release -p kiln-zoo --example test_scenes --quiet -- "$scenes" 16
copy() { # model, name suffix, section, settings…
    local model=$1 name=$2 section=$3
    shift 3
    cp -r "models/$model" "$repo/$model-$name"
    for setting in "$@"; do
        key=${setting%%=*}
        sed -i "/^\[$section\]/,/^\[/{/^$key = /d}" "$repo/$model-$name/model.toml"
        sed -i "/^\[$section\]/a $key = ${setting#*=}" "$repo/$model-$name/model.toml"
    done
}
copy transformer-web-en continuous generation
copy transformer-web-en static generation continuous_batching=false
copy transformer-web-en target generation "target_step_p99_ms=$target_ms"
for captioner in captioner-lstm captioner-transformer; do
    copy "$captioner" continuous decoding
    copy "$captioner" static decoding continuous_batching=false
done
export KILN_MODEL_REPOSITORY="$repo"
cargo build --release -p kiln-loadtest --quiet
source scripts/lib/pin.sh
# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh

load() { # model, form, concurrency, extra arguments…
    local model=$1 form=$2 concurrency=$3
    shift 3
    "${load_pin[@]}" ./target/release/kiln-loadtest --url "$base" --model "$model" --form "$form" \
        --concurrency "$concurrency" --warmup-secs 2 --window-secs 3 --max-windows 4 "$@" 2>/dev/null
}

[[ " $parts " == *" static "* ]] && echo "## continuous against static batching"
for mode in continuous static; do
    [[ " $parts " == *" static "* ]] || break
    echo "== transformer-web-en, generate $max_tokens tokens, $mode"
    load "transformer-web-en-$mode" generate 16:64:x4 --max-tokens "$max_tokens" \
        --prompts examples/prompts-en.txt
    for captioner in captioner-lstm captioner-transformer; do
        echo "== $captioner, greedy, $mode"
        load "$captioner-$mode" caption 16:64:x4 --inputs "$scenes"
    done
done

# Inter-token gaps of one model from two scrapes of /metrics: the share within the target
# and the p99, interpolated inside its bucket.
gaps() { # before, after, model
    python3 - "$1" "$2" "$3" "$target_ms" <<'PYEOF'
import re, sys
before, after, model, target_ms = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def buckets(path):
    found = {}
    for line in open(path):
        m = re.match(r'kiln_inter_token_latency_seconds_bucket\{(.*)\} (\S+)', line)
        if m and f'model="{model}"' in m.group(1):
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            found[float("inf") if le == "+Inf" else float(le)] = float(m.group(2))
    return found
b, a = buckets(before), buckets(after)
counts = sorted((le, a[le] - b.get(le, 0.0)) for le in a)
total = counts[-1][1]
within = next(c for le, c in counts if abs(le - target_ms / 1e3) < 1e-12)
rank, lower, below = 0.99 * total, 0.0, 0.0
for le, cumulative in counts:
    if cumulative >= rank:
        share = (rank - below) / max(cumulative - below, 1.0)
        p99 = lower + share * (le - lower) if le != float("inf") else lower
        break
    lower, below = le, cumulative
print(f"inter-token gaps: {int(total)}, within {target_ms:g} ms: {100 * within / total:.1f} %, p99 ≈ {p99 * 1e3:.1f} ms")
PYEOF
}

[[ " $parts " == *" target "* ]] && echo "## step target $target_ms ms, transformer-web-en, c=64"
for name in continuous target; do
    [[ " $parts " == *" target "* ]] || break
    model="transformer-web-en-$name"
    before=$(mktemp)
    after=$(mktemp)
    curl -s "$base/metrics" >"$before"
    echo "== $model"
    load "$model" generate 64 --max-tokens "$max_tokens" --prompts examples/prompts-en.txt
    curl -s "$base/metrics" >"$after"
    gaps "$before" "$after" "$model"
    curl -s "$base/metrics" | grep "^kiln_generation_max_active_sequences{.*model=\"$model\"" || true
    rm -f "$before" "$after"
done
