#!/usr/bin/env bash
# Batching under open-loop load: a grid of fixed batch sizes and delays beside the latency
# target (throughput and energy objectives), each swept with Poisson arrivals from 10 % to
# 150 % of the model's capacity. Writes each run's results and server log (server.log,
# with the batching choices it logged), the plots, and summary.md.
#
#   [MODEL=lenet-fashion] [TARGET_MS=20] [SIZES="1 8 64"] [DELAYS_US="0 2000"] \
#   [OUT=bench/batching] [REUSE_FIXED=1] [KILN_BIN=path] scripts/bench-batching.sh
#
# REUSE_FIXED=1 keeps the fixed configurations' results of an earlier run (and its
# capacity) and reruns only the latency-target ones: for trying changes, not for the
# figures in BENCHMARKS.md, which come from one whole run. SUMMARY_ONLY=1 runs nothing and
# redraws the plot and summary.md from the results in OUT. KILN_BIN serves with another
# binary (an older build, to compare) instead of target/release/kiln.
#
# Capacity is measured first, closed-loop at 64 concurrent requests with the largest fixed
# batch and no delay. "Within target" throughput is a run's best throughput at a level
# whose p99 (of answered requests) is within the target.
#
# The load generator runs on a core of its own, the server on the others
# (scripts/lib/pin.sh; PIN=0 shares every core between them).
set -euo pipefail
cd "$(dirname "$0")/.."

model=${MODEL:-lenet-fashion}
target_ms=${TARGET_MS:-20}
read -r -a sizes <<<"${SIZES:-1 8 64}"
read -r -a delays <<<"${DELAYS_US:-0 2000}"
out=${OUT:-bench/batching}/$model
source_dir=${MODEL_DIR:-models/$model}
kiln=${KILN_BIN:-./target/release/kiln}
[ -f "$source_dir/model.toml" ] || { echo "no model folder $source_dir" >&2; exit 1; }

cargo build --release -p kiln-server -p kiln-loadtest --quiet
source scripts/lib/pin.sh
mkdir -p "$out"
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$work"' EXIT

# A repository holding the model with its [batching] table replaced by "$2".
repository() {
    local repo="$work/$1"
    mkdir -p "$repo/$model"
    for f in "$source_dir"/*; do ln -s "$(realpath "$f")" "$repo/$model/"; done
    rm "$repo/$model/model.toml"
    python3 - "$source_dir/model.toml" "$repo/$model/model.toml" "$2" <<'PYEOF'
import re, sys
source, target, batching = sys.argv[1:]
text = open(source).read()
# Drop the [batching] table (up to the next table or the end), then append the new one.
text = re.sub(r"(?ms)^\[batching\]\n.*?(?=^\[|\Z)", "", text)
open(target, "w").write(text.rstrip() + "\n\n[batching]\n" + batching + "\n")
PYEOF
    echo "$repo"
}

# Start `kiln serve` on the repository; sets $server and $base.
serve() {
    mkdir -p "$out/$2"
    local log="$out/$2/server.log"
    "${server_pin[@]}" "$kiln" serve --model-repository "$1" --http-addr 127.0.0.1:0 \
        --grpc-addr 127.0.0.1:0 >"$log" 2>&1 &
    server=$!
    base=""
    for _ in $(seq 600); do
        local addr
        addr=$(sed -n 's/.*kiln listening.*http=\([0-9.:]*\).*/\1/p' "$log" | head -1)
        if [ -n "$addr" ] && curl -sf "http://$addr/v2/health/ready" >/dev/null; then
            base="http://$addr"
            return
        fi
        sleep 0.1
    done
    cat "$log" >&2
    exit 1
}

stop() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
}

loadtest() {
    "${load_pin[@]}" ./target/release/kiln-loadtest --url "$base" --model "$model" --warmup-secs 1 \
        --window-secs 2 --max-windows 3 "$@"
}

largest=${sizes[-1]}
fixed_batching() {
    printf 'max_batch_size = %s\nmax_queue_delay_us = %s\nmax_queue_size = 1024\n' "$1" "$2"
}

if [ "${REUSE_FIXED:-0}" = 1 ] || [ "${SUMMARY_ONLY:-0}" = 1 ]; then
    capacity=$(cat "$out/capacity.txt")
else
    echo "== capacity: batch $largest, no delay, 64 concurrent requests"
    serve "$(repository capacity "$(fixed_batching "$largest" 0)")" capacity
    loadtest --concurrency 64 --output-dir "$work/capacity" >/dev/null
    stop
    capacity=$(python3 -c "import json,sys; print(max(l['throughput'] for l in json.load(open(sys.argv[1]))))" \
        "$work/capacity/results.json")
    echo "$capacity" >"$out/capacity.txt"
fi
rates=$(python3 -c "c=$capacity; print(f'{0.1*c:.1f}:{1.5*c + 1:.1f}:+{0.2*c:.1f}')")
echo "capacity ${capacity} req/s; offered rates $rates"

runs=()
run() {
    local name=$1 batching=$2
    if [ "${SUMMARY_ONLY:-0}" = 1 ] || { [ "${REUSE_FIXED:-0}" = 1 ] && [[ $name == fixed-* ]]; }; then
        runs+=("$name=$out/$name/results.json")
        return
    fi
    echo "== $name"
    serve "$(repository "$name" "$batching")" "$name"
    loadtest --request-rate "$rates" --output-dir "$out/$name"
    curl -s "$base/v2/models/$model/config" >"$out/$name/config.json"
    stop
    runs+=("$name=$out/$name/results.json")
}

for size in "${sizes[@]}"; do
    for delay in "${delays[@]}"; do
        run "fixed-b${size}-d${delay}us" "$(fixed_batching "$size" "$delay")"
    done
done
for objective in throughput energy; do
    run "target-${target_ms}ms-$objective" "$(printf 'max_batch_size = 128\nmax_queue_delay_us = 0\nmax_queue_size = 1024\ntarget_p99_ms = %s\nobjective = "%s"\n' "$target_ms" "$objective")"
done

./target/release/kiln-loadtest plot "${runs[@]}" --out "$out/all.svg" \
    --target-ms "$target_ms" --title "$model: fixed batching and a ${target_ms} ms target"

python3 - "$out" "$target_ms" "$capacity" "${runs[@]}" <<'PYEOF'
import json, sys
out, target, capacity, runs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
rows = []
for run in runs:
    name, path = run.split("=", 1)
    levels = json.load(open(path))
    within = [l["throughput"] for l in levels if l["latency"]["p99_ms"] <= target]
    worst_p99 = max(l["latency"]["p99_ms"] for l in levels)
    rows.append((name, max(within, default=0.0), worst_p99, levels))
fixed = [r for r in rows if r[0].startswith("fixed")]
best = max(fixed, key=lambda r: r[1])
worst = min(fixed, key=lambda r: r[1])
lines = [f"capacity (closed loop, 64 concurrent): {capacity:.0f} req/s; target p99 {target:g} ms", "",
         "| configuration | throughput within target (req/s) | share of best fixed | worst p99 over the sweep (ms) | p99 ≤ target at every load |",
         "|---|---|---|---|---|"]
for name, within, worst_p99, _ in rows:
    mark = " (best fixed)" if name == best[0] else " (worst fixed)" if name == worst[0] else ""
    lines.append(f"| {name}{mark} | {within:.0f} | {within / best[1]:.0%} | {worst_p99:.1f} | {'yes' if worst_p99 <= target else 'no'} |")
lines += ["", "Per offered load (req/s): answered req/s, p99 ms, refused, items per joule",
          "", "| configuration | " + " | ".join(f"{l['level_value']:.0f}" for l in rows[0][3]) + " |",
          "|---|" + "---|" * len(rows[0][3])]
for name, _, _, levels in rows:
    cells = []
    for l in levels:
        ipj = (l.get("server") or {}).get("items_per_joule", 0.0)
        ipj_text = f"{ipj:.0f}" if ipj >= 100 else f"{ipj:.3g}"
        cells.append(f"{l['throughput']:.0f} / {l['latency']['p99_ms']:.1f} / {l['measured_errors']} / {ipj_text}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
# What the controller had chosen when each level's measurement ended (loadtest reads the
# gauges; results written before it did have none).
targeted = [(name, levels) for name, _, _, levels in rows
            if any((l.get("server") or {}).get("target_share_at_end") is not None for l in levels)]
if targeted:
    lines += ["", "At each level's end: the chosen largest batch / the target's share left to batching",
              "", "| configuration | " + " | ".join(f"{l['level_value']:.0f}" for l in rows[0][3]) + " |",
              "|---|" + "---|" * len(rows[0][3])]
    for name, levels in targeted:
        cells = []
        for l in levels:
            server = l.get("server") or {}
            size, share = server.get("batch_size_at_end"), server.get("target_share_at_end")
            cells.append(f"{size:.0f} / {share:.2f}" if size is not None and share is not None else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    # The log's share of the sweep: a notable change of choice is one line.
    logged = []
    for name, _ in targeted:
        try:
            with open(f"{out}/{name}/server.log") as log:
                logged.append(f"{name} {sum('batching choice changed' in line for line in log)}")
        except FileNotFoundError:
            pass
    if logged:
        lines += ["", "Batching choices logged over the sweep: " + ", ".join(logged)]
# Levels whose requests left late: there the latencies count the load generator's own lag
# (kiln-loadtest's verdict; results written before it measured lag have none).
late = [f"{name} at {l['level_value']:.0f} ({l['send_lag_p99_ms']:.1f} ms late of p99 {l['latency']['p99_ms']:.1f} ms)"
        for name, _, _, levels in rows for l in levels if l.get("generator_fell_behind", False)]
lines += ["", "Levels where the load generator fell behind its schedule (p99 send lag): "
          + (", ".join(late) if late else "none")]
text = "\n".join(lines) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
PYEOF
