#!/usr/bin/env bash
# Two builds of the server on the same load, alternating round by round, so that a noisy
# machine's drift falls on both alike: a language model's tokens/s or a captioner's
# captions/s (greedy, over the test scenes), and the server's CPU time per token or caption
# (from /proc), at one concurrency, with the bundled models and their own settings.
#
#   BEFORE=/tmp/kiln-before [AFTER=target/release/kiln] [ROUNDS=3] [MODEL=transformer-web-en] \
#   [CONCURRENCY=64] scripts/bench-paired.sh
#
# Each round starts a fresh server per binary, warms it up for 3 s, then measures 8 s (two
# windows of 4 s) with `kiln-loadtest --form generate` (`--form caption` for a model named
# captioner-*). The load generator runs on a core of its own (scripts/lib/pin.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

before=${BEFORE:?BEFORE names the binary to compare against}
after=${AFTER:-target/release/kiln}
rounds=${ROUNDS:-3}
model=${MODEL:-transformer-web-en}
concurrency=${CONCURRENCY:-64}
cargo build --release -p kiln-loadtest --quiet
source scripts/lib/pin.sh
source scripts/lib/server.sh
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$work"' EXIT

form=(--form generate)
if [[ $model == captioner-* ]]; then
    source scripts/lib/setup.sh
    need_packages dataset-fashion-mnist
    mkdir "$work/scenes"
    # The server's features, so the scene writer shares its build rather than compile another.
    cargo run --release -p kiln-zoo --features flex-parallel --example test_scenes --quiet -- \
        "$work/scenes" 16
    form=(--form caption --inputs "$work/scenes")
fi

load() { # extra arguments…
    "${load_pin[@]}" ./target/release/kiln-loadtest --url "$base" --model "$model" \
        "${form[@]}" --concurrency "$concurrency" "$@" >/dev/null 2>&1
}


for round in $(seq "$rounds"); do
    for which in before after; do
        binary=$before
        [ "$which" = after ] && binary=$after
        log="$work/$which-$round.log"
        "${server_pin[@]}" "$binary" serve --http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 \
            >"$log" 2>&1 &
        server=$!
        wait_ready "$log"
        load --warmup-secs 3 --window-secs 1 --max-windows 1
        start=$(cpu_ticks "$server")
        load --warmup-secs 0 --window-secs 4 --max-windows 2 --output-dir "$work/$which-$round"
        end=$(cpu_ticks "$server")
        kill "$server"
        wait "$server" 2>/dev/null || true
        server=""
        python3 - "$work/$which-$round/results.json" $((end - start)) "$(getconf CLK_TCK)" \
            "$which" "$round" "${form[1]}" <<'PYEOF'
import json, sys
path, ticks, per_second, which, round_, form = sys.argv[1:]
level = json.load(open(path))[-1]
if form == "caption":
    items, unit = level["throughput"], "caption"
else:
    items, unit = level.get("tokens_per_second") or 0.0, "token"
cpu_seconds = int(ticks) / int(per_second)
measured = 8.0  # two windows of 4 s
per_item = cpu_seconds / (items * measured) * 1e6 if items else float("nan")
print(f"round {round_} {which:6s} {items:8.0f} {unit}s/s, server CPU {per_item:6.1f} µs per {unit}")
PYEOF
    done
done
