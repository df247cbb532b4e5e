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

if ! command -v hey >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq hey; else sudo apt-get install -y -qq hey; fi
fi
cargo build --release -p kiln-server --quiet

log=$(mktemp)
./target/release/kiln serve --http-addr 127.0.0.1:0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
addr=""
for _ in $(seq 100); do
    addr=$(sed -n 's/.*kiln listening.*http=\([0-9.:]*\).*/\1/p' "$log" | head -1)
    [ -n "$addr" ] && curl -sf "http://$addr/v2/health/ready" >/dev/null && break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; exit 1; }
base="http://$addr"

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
