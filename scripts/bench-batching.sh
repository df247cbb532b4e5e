#!/usr/bin/env bash
# Batching under open-loop load: a grid of fixed batch sizes and delays beside the latency
# target (throughput and energy objectives), each swept with Poisson arrivals from 10 % to
# 150 % of the model's capacity. Writes each run's results and server log (server.log,
# with the batching choices it logged), the plots, and summary.md.
#
#   [MODEL=lenet-fashion] [TARGET_MS=20] [SIZES="1 8 64"] [DELAYS_US="0 2000"] \
#   [OUT=bench/batching] [REUSE_FIXED=1] [ROUNDS=1] [KILN_BIN=path] scripts/bench-batching.sh
#
# ROUNDS=N sweeps the two latency-target configurations N times, their order turned round
# from one round to the next (round 1 in OUT/MODEL/, the others in OUT/MODEL/round-R/), so
# that a machine's drift falls on both objectives alike. summary.md then ends with each
# round's verdicts and, per offered load, the medians over the rounds.
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
source scripts/lib/server.sh
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
    wait_ready "$log"
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
# run NAME BATCHING [ROUND]: sweeps one configuration into OUT/MODEL/NAME, or for a round
# after the first into OUT/MODEL/round-ROUND/NAME (those are summarised apart).
run() {
    local name=$1 batching=$2 round=${3:-1}
    local dir=$name
    [ "$round" = 1 ] || dir=round-$round/$name
    [ "$round" = 1 ] && runs+=("$name=$out/$name/results.json")
    if [ "${SUMMARY_ONLY:-0}" = 1 ] || { [ "${REUSE_FIXED:-0}" = 1 ] && [[ $name == fixed-* ]]; }; then
        return
    fi
    echo "== $dir"
    serve "$(repository "$name" "$batching")" "$dir"
    loadtest --request-rate "$rates" --output-dir "$out/$dir"
    curl -s "$base/v2/models/$model/config" >"$out/$dir/config.json"
    stop
}

for size in "${sizes[@]}"; do
    for delay in "${delays[@]}"; do
        run "fixed-b${size}-d${delay}us" "$(fixed_batching "$size" "$delay")"
    done
done
rounds=${ROUNDS:-1}
# A summary reads every round-R/ folder there is: an earlier run's are not this one's.
[ "${SUMMARY_ONLY:-0}" = 1 ] || rm -rf "$out"/round-*
for round in $(seq "$rounds"); do
    order=(throughput energy)
    ((round % 2 == 0)) && order=(energy throughput)
    for objective in "${order[@]}"; do
        run "target-${target_ms}ms-$objective" "$(printf 'max_batch_size = 128\nmax_queue_delay_us = 0\nmax_queue_size = 1024\ntarget_p99_ms = %s\nobjective = "%s"\n' "$target_ms" "$objective")" "$round"
    done
done

./target/release/kiln-loadtest plot "${runs[@]}" --out "$out/all.svg" \
    --target-ms "$target_ms" --title "$model: fixed batching and a ${target_ms} ms target"
# Every round of the target configurations in one picture (rounds.svg), when there are some.
round_runs=()
for dir in "$out"/target-*ms-* "$out"/round-*/target-*ms-*; do
    [ -f "$dir/results.json" ] || continue
    round=$(basename "$(dirname "$dir")")
    [[ $round == round-* ]] || round=round-1
    round_runs+=("$(basename "$dir" | sed 's/^target-[0-9]*ms-//')-$round=$dir/results.json")
done
if compgen -G "$out/round-*" >/dev/null; then
    ./target/release/kiln-loadtest plot "${round_runs[@]}" --out "$out/rounds.svg" \
        --target-ms "$target_ms" --title "$model: the ${target_ms} ms target, every round"
fi

python3 - "$out" "$target_ms" "$capacity" "${runs[@]}" <<'PYEOF'
import glob, json, os, re, sys
from statistics import median
out, target, capacity, runs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
per_joule = lambda v: f"{v:.0f}" if v >= 100 else f"{v:.3g}"
ipj = lambda l: (l.get("server") or {}).get("items_per_joule", 0.0)
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
        cells.append(f"{l['throughput']:.0f} / {l['latency']['p99_ms']:.1f} / {l['measured_errors']} / {per_joule(ipj(l))}")
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
# Rounds of the target configurations (ROUNDS): round 1 is the sweep above, later ones
# are in round-R/. Each objective's verdict per round, then per offered load the medians.
names = [name for name, *_ in rows if name.startswith("target-")]
later = sorted({int(m.group(1)) for d in glob.glob(f"{out}/round-*")
                if (m := re.search(r"round-(\d+)$", d))})
if later and len(names) == 2:
    throughput_name, energy_name = sorted(names, key=lambda n: not n.endswith("throughput"))
    def load(round_, name):
        path = f"{out}/{name}/results.json" if round_ == 1 else f"{out}/round-{round_}/{name}/results.json"
        return json.load(open(path)) if os.path.exists(path) else None
    rounds = [(r, load(r, throughput_name), load(r, energy_name)) for r in [1] + later]
    rounds = [r for r in rounds if r[1] and r[2]]
    def verdict(levels):
        within = [l for l in levels if l["latency"]["p99_ms"] <= target]
        served = max((l["throughput"] for l in within), default=0.0)
        worst = max(levels, key=lambda l: l["latency"]["p99_ms"])
        return (f"{len(within)} of {len(levels)} ({worst['latency']['p99_ms']:.1f} ms at "
                f"{worst['level_value']:.0f}); {served:.0f} req/s, {served / best[1]:.0%}")
    lines += ["", f"Rounds of the target configurations ({len(rounds)}, the order turned round each round): "
              "levels within the target (worst p99 at its offered load); throughput within the target "
              "and its share of the best fixed configuration's; the levels where the "
              "energy objective's items per joule are at least the throughput objective's", "",
              "| round | throughput | energy | energy's items/J ≥ throughput's |", "|---|---|---|---|"]
    for r, tp, en in rounds:
        ahead = sum(ipj(e) >= ipj(t) for t, e in zip(tp, en))
        lines.append(f"| {r} | {verdict(tp)} | {verdict(en)} | {ahead} of {len(tp)} |")
    lines += ["", "Medians over the rounds per offered load (req/s): answered req/s, p99 ms, items per joule; "
              "then the rounds where energy's items/J ≥ throughput's", "",
              "| offered | throughput | energy | energy ≥ throughput |", "|---|---|---|---|"]
    for i, level in enumerate(rounds[0][1]):
        cells = []
        for which in (1, 2):
            ls = [r[which][i] for r in rounds]
            cells.append(f"{median([l['throughput'] for l in ls]):.0f} / "
                         f"{median([l['latency']['p99_ms'] for l in ls]):.1f} / "
                         f"{per_joule(median([ipj(l) for l in ls]))}")
        ahead = sum(ipj(r[2][i]) >= ipj(r[1][i]) for r in rounds)
        lines.append(f"| {level['level_value']:.0f} | {cells[0]} | {cells[1]} | {ahead} of {len(rounds)} |")
text = "\n".join(lines) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
PYEOF
