#!/usr/bin/env bash
# Bounded soak: steady HTTP load against the bundled LeNet for N minutes, sampling the
# server's resident memory and error counters every 10 s.
#
#   scripts/soak.sh [MINUTES] [CONCURRENCY]
#
# Loopback only; stops by itself. Needs `hey` (Debian package, installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-5}
concurrency=${2:-32}

# shellcheck source=scripts/start-kiln.sh
source scripts/start-kiln.sh

hey -z "${minutes}m" -c "$concurrency" -m POST -T image/png -D examples/images/shirt.png \
    "$base/v1/models/lenet-fashion/classify" >/tmp/kiln-soak-hey.txt &
load=$!

sample() {
    local metrics rss ok failed
    metrics=$(curl -s "$base/metrics")
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    ok=$(awk '/^kiln_request_success_total/ {print $2}' <<<"$metrics")
    failed=$(awk '/^kiln_request_failure_total/ {s += $2} END {print s + 0}' <<<"$metrics")
    printf '%6ds %10.1f MiB %12s ok %8s failed\n' "$1" "$(awk -v r="$rss" 'BEGIN {print r / 1024}')" "${ok:-0}" "$failed"
}
start=$(date +%s)
while kill -0 $load 2>/dev/null; do
    sample $(( $(date +%s) - start ))
    sleep 10
done
sample $(( $(date +%s) - start ))
grep -E "Requests/sec|99% in|\[[0-9]+\]" /tmp/kiln-soak-hey.txt
