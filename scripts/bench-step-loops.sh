#!/usr/bin/env bash
# The step loops under load, in one server run:
#   1. continuous against static batching for the Transformer language model (tokens/s)
#      and both captioners (captions/s, greedy), at concurrency 16 and 64, for ROUNDS
#      rounds (default 4). Each round measures every model both ways back to back, the
#      order turned round from one round to the next, so a noisy machine's drift falls on
#      both alike; the summary counts the rounds continuous wins, gives the server's CPU
#      time per token or caption (from /proc and Kiln's counters, steadier than throughput
#      on a machine that lends its cores), whole and per thread name, and, for the
#      captioners, each stage's mean batch and compute per item from Kiln's own histograms;
#   2. the Transformer language model at concurrency 64 without and with a step target
#      (TARGET_MS, default 10: a bucket bound of kiln_inter_token_latency_seconds, so the
#      share of gaps within it is exact), reporting tokens/s, the share of inter-token
#      gaps within the target and the p99 gap, both read from Kiln's own histogram.
#
#   [ROUNDS=4] scripts/bench-step-loops.sh            (PARTS="static target" by default: both)
#
# MODELS="…" measures only some of part 1's models (default: "transformer-web-en
# captioner-lstm captioner-transformer"), e.g. more rounds of one of them in the same time.
# CAPTION_SETTINGS="key=value …" changes the continuous captioners' `[decoding]` settings,
# e.g. "min_encoder_batch_size=32 max_encoder_wait_ms=50" to gather joiners longer.
# OUT=folder keeps part 1: every round's results.json (rounds/), the summary (summary.txt),
# each model's medians over the rounds per mode (MODEL-MODE.json) and a plot of them
# (MODEL.svg: latency and requests/s against concurrency, continuous against static).
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
rounds=${ROUNDS:-4}
models=${MODELS:-transformer-web-en captioner-lstm captioner-transformer}
repo=$(mktemp -d)
scenes=$(mktemp -d)
results=$(mktemp -d)
trap 'rm -rf "$repo" "$scenes" "$results"' EXIT
# The server's features, so the scene writer shares its build rather than compile another.
cargo run --release -p kiln-zoo --features flex-parallel --example test_scenes --quiet -- "$scenes" 16
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
    # shellcheck disable=SC2086 # one word per setting
    copy "$captioner" continuous decoding ${CAPTION_SETTINGS:-}
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

# One model one way at one concurrency: the load generator's results.json, and the
# server's /metrics and CPU time, whole and per thread name (scripts/lib/server.sh), before
# and after it (for the captioners' stage histograms and the server's CPU per token or
# caption, and where it goes).
measure() { # round, model, mode, concurrency
    local round=$1 model=$2 mode=$3 concurrency=$4
    local out="$results/$round/$model/$mode/$concurrency"
    mkdir -p "$out"
    curl -s "$base/metrics" >"$out/before.prom"
    cpu_ticks "$server" >"$out/cpu-before"
    thread_ticks "$server" >"$out/threads-before"
    if [ "$model" = transformer-web-en ]; then
        load "$model-$mode" generate "$concurrency" --max-tokens "$max_tokens" \
            --prompts examples/prompts-en.txt --output-dir "$out" >/dev/null
    else
        load "$model-$mode" caption "$concurrency" --inputs "$scenes" --output-dir "$out" >/dev/null
    fi
    cpu_ticks "$server" >"$out/cpu-after"
    thread_ticks "$server" >"$out/threads-after"
    curl -s "$base/metrics" >"$out/after.prom"
}

[ -z "${OUT:-}" ] || mkdir -p "$OUT"
if [[ " $parts " == *" static "* ]]; then
    echo "## continuous against static batching, $rounds rounds (LM: $max_tokens tokens; captioners: greedy${CAPTION_SETTINGS:+, continuous with $CAPTION_SETTINGS})"
    for round in $(seq "$rounds"); do
        order="continuous static"
        ((round % 2 == 0)) && order="static continuous"
        for model in $models; do
            for concurrency in 16 64; do
                for mode in $order; do
                    measure "$round" "$model" "$mode" "$concurrency"
                done
            done
        done
        echo "round $round of $rounds done ($order)"
    done
    python3 - "$results" "$rounds" "${OUT:-}" "$(getconf CLK_TCK)" "$models" <<'PYEOF' | tee "$results/summary.txt"
import json, re, statistics, sys
results, rounds, out, ticks_per_second = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
LANGUAGE_MODEL = "transformer-web-en"
models = sys.argv[5].split()

def throughput(path, model):
    level = json.load(open(path))[-1]
    if model == LANGUAGE_MODEL:
        return level.get("tokens_per_second") or 0.0
    return level["throughput"]

def stage(path, name, model, stage_name):
    """Sum and count of one caption stage histogram of the copy `model`."""
    total = count = 0.0
    for line in open(path):
        m = re.match(rf'{name}_(sum|count)\{{(.*)\}} (\S+)', line)
        if m and f'model="{model}"' in m.group(2) and f'stage="{stage_name}"' in m.group(2):
            if m.group(1) == "sum":
                total = float(m.group(3))
            else:
                count = float(m.group(3))
    return total, count

def stages(folder, model):
    """Mean batch and compute per item of each stage during one measurement (warm-up included)."""
    found = {}
    for stage_name in ("encoder", "decoder"):
        diff = {}
        for name in ("kiln_caption_stage_duration_seconds", "kiln_caption_stage_batch_size"):
            s0, c0 = stage(f"{folder}/before.prom", name, model, stage_name)
            s1, c1 = stage(f"{folder}/after.prom", name, model, stage_name)
            diff[name] = (s1 - s0, c1 - c0)
        seconds, batches = diff["kiln_caption_stage_duration_seconds"]
        items, _ = diff["kiln_caption_stage_batch_size"]
        if batches and items:
            found[stage_name] = (items / batches, seconds / items * 1e6)
    return found

def served(path, model, mode):
    """Tokens generated (the LM) or captions answered by one copy of `model`, as counted so far."""
    name = "kiln_generated_tokens_total" if model == LANGUAGE_MODEL else "kiln_request_success_total"
    return sum(float(m.group(2)) for line in open(path)
               if (m := re.match(rf'{name}\{{(.*)\}} (\S+)', line))
               and f'model="{model}-{mode}"' in m.group(1))

def items_served(folder, model, mode):
    return served(f"{folder}/after.prom", model, mode) - served(f"{folder}/before.prom", model, mode)

def cpu_per_item(folder, model, mode):
    """The server's CPU µs per token or caption over one measurement (warm-up included):
    steadier than throughput on a noisy machine, as it does not count time the core was lent."""
    items = items_served(folder, model, mode)
    ticks = float(open(f"{folder}/cpu-after").read()) - float(open(f"{folder}/cpu-before").read())
    return ticks / ticks_per_second * 1e6 / items if items else float("nan")

def threads_per_item(folder, model, mode):
    """The same per thread name (the step loop, the compute pool, the HTTP workers), for the
    names that used any: where a token's or a caption's CPU goes."""
    items = items_served(folder, model, mode)
    read = lambda name: {n: float(t) for n, t in (line.split() for line in open(f"{folder}/{name}"))}
    before, after = read("threads-before"), read("threads-after")
    used = {n: t - before.get(n, 0.0) for n, t in after.items()}
    return {n: t / ticks_per_second * 1e6 / items for n, t in sorted(used.items()) if t > 0 and items}

unit = {LANGUAGE_MODEL: "tokens/s"}
for model in models:
    for concurrency in (16, 64):
        ratios, cpu_ratios, rows = [], [], []
        for round_ in range(1, rounds + 1):
            cells = {}
            for mode in ("continuous", "static"):
                folder = f"{results}/{round_}/{model}/{mode}/{concurrency}"
                cells[mode] = (throughput(f"{folder}/results.json", model),
                               stages(folder, f"{model}-{mode}"),
                               cpu_per_item(folder, model, mode),
                               threads_per_item(folder, model, mode))
            c, s = cells["continuous"][0], cells["static"][0]
            ratios.append(c / s if s else float("nan"))
            cpu_ratios.append(cells["continuous"][2] / cells["static"][2])
            rows.append((round_, cells))
        wins = sum(r >= 1.0 for r in ratios)
        print(f"== {model}, c={concurrency} ({unit.get(model, 'captions/s')}): continuous ≥ static "
              f"in {wins} of {rounds} rounds, median continuous/static {statistics.median(ratios):.3f}; "
              f"server CPU per item, median continuous/static {statistics.median(cpu_ratios):.3f}")
        for round_, cells in rows:
            line = f"  round {round_}: " + ", ".join(
                f"{mode} {cells[mode][0]:,.1f}" for mode in ("continuous", "static"))
            line += f" ({cells['continuous'][0] / cells['static'][0] - 1:+.1%})"
            line += "; server CPU " + ", ".join(
                f"{mode[:4]} {cells[mode][2]:.1f} µs/item" for mode in ("continuous", "static"))
            for mode in ("continuous", "static"):
                for stage_name, (batch, micros) in sorted(cells[mode][1].items(), reverse=True):
                    line += f"; {mode[:4]} {stage_name} {batch:.1f}/batch {micros:.0f} µs/item"
            for mode in ("continuous", "static"):
                line += f"; {mode[:4]} threads " + ", ".join(
                    f"{name} {micros:.0f}" for name, micros in cells[mode][3].items()) + " µs/item"
            print(line)

# Each model's medians over the rounds, per mode and concurrency, as a results.json the
# load generator's plot reads.
if out:
    for model in models:
        for mode in ("continuous", "static"):
            levels = []
            for concurrency in (16, 64):
                found = [json.load(open(f"{results}/{r}/{model}/{mode}/{concurrency}/results.json"))[-1]
                         for r in range(1, rounds + 1)]
                median = lambda pick: statistics.median(pick(level) for level in found)
                levels.append({
                    "level": f"concurrency {concurrency}, median of {rounds} rounds",
                    "level_value": concurrency,
                    "throughput": median(lambda l: l["throughput"]),
                    "tokens_per_second": median(lambda l: l.get("tokens_per_second") or 0.0),
                    "latency": {"p50_ms": median(lambda l: l["latency"]["p50_ms"]),
                                "p99_ms": median(lambda l: l["latency"]["p99_ms"])},
                })
            with open(f"{out}/{model}-{mode}.json", "w") as f:
                json.dump(levels, f, indent=2)
PYEOF
    if [ -n "${OUT:-}" ]; then
        cp "$results/summary.txt" "$OUT/"
        rm -rf "$OUT/rounds" # an earlier run's rounds, however many
        for model in $models; do
            for mode in continuous static; do
                for round in $(seq "$rounds"); do
                    for concurrency in 16 64; do
                        mkdir -p "$OUT/rounds/$round/$model/$mode/$concurrency"
                        cp "$results/$round/$model/$mode/$concurrency/results.json" \
                            "$OUT/rounds/$round/$model/$mode/$concurrency/"
                    done
                done
            done
            ./target/release/kiln-loadtest plot "continuous=$OUT/$model-continuous.json" \
                "static=$OUT/$model-static.json" --out "$OUT/$model.svg" \
                --offered "concurrency (closed loop)" \
                --title "$model: continuous against static batching, medians of $rounds rounds"
        done
    fi
fi

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
