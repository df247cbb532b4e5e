#!/usr/bin/env bash
# Served classifier throughput and latency through HTTP at several concurrency levels.
#
#   [MODEL=lenet-fashion] [IMAGE=examples/images/shirt.png] \
#       scripts/bench-http.sh [REQUESTS_PER_LEVEL] [CONCURRENCY...]
#
# Builds the release binary, starts `kiln serve` on a free loopback port with the models
# of models/, and drives POST /v1/models/$MODEL/classify with a real PNG using `hey`
# (Debian package `hey`, installed if missing). Prints one line per level.
set -euo pipefail
cd "$(dirname "$0")/.."

requests=${1:-20000}
shift || true
if [ $# -gt 0 ]; then levels=("$@"); else levels=(1 16 64); fi

# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh
model=${MODEL:-lenet-fashion}
image=${IMAGE:-examples/images/shirt.png}
url="$base/v1/models/$model/classify"

printf '%-12s %10s %10s %10s %8s\n' concurrency "req/s" "p50 ms" "p99 ms" errors
for c in "${levels[@]}"; do
    hey -n "$requests" -c "$c" -m POST -T image/png -D "$image" "$url" >/dev/null  # warm-up
    out=$(hey -n "$requests" -c "$c" -m POST -T image/png -D "$image" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '/ 50% in/ {print $3 * 1000}' <<<"$out")
    p99=$(awk '/ 99% in/ {print $3 * 1000}' <<<"$out")
    # Non-200 statuses plus transport errors (hey lists both as "[count] ..." lines).
    errors=$(awk '/^Status code distribution/ {s = 1; next} /^Error distribution/ {s = 2; next}
        s == 1 && /\[[0-9]+\]/ && !/\[200\]/ {n += $2} s == 2 && /\[[0-9]+\]/ {gsub(/[][]/, "", $1); n += $1}
        END {print n + 0}' <<<"$out")
    printf '%-12s %10.0f %10.2f %10.2f %8d\n' "$c" "$rps" "$p50" "$p99" "$errors"
done
curl -s "$base/metrics" | grep -E '^kiln_(inference_count|inference_exec_count)_total' || true
