#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
for target in $(cargo +nightly fuzz list); do
    echo "fuzzing $target for ${seconds}s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536
done
