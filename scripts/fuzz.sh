#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each), growing its corpus in
# fuzz/corpus/<target>/. The Rust suite replays that corpus and fuzz/regressions/<target>/
# on stable Rust (server/tests/fuzz_corpus.rs): commit new corpus entries worth keeping
# (`cargo fuzz cmin <target>` first), and copy any crash into fuzz/regressions/<target>/
# once it is fixed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_SANITIZER=address scripts/fuzz.sh 600    # with AddressSanitizer
#
# Builds with the project's pinned toolchain (RUSTC_BOOTSTRAP lets it take libFuzzer's
# unstable flags, so no nightly toolchain is needed) and installs cargo-fuzz if missing.
# Without a sanitizer by default: Kiln's own code forbids `unsafe` (but for the kernel crate,
# which its property tests cover), the fuzzers hunt panics, hangs and runaway memory, and an
# instrumented build of the whole tensor stack is several times slower to compile.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
for target in $(cargo fuzz list); do
    echo "fuzzing $target for ${seconds}s"
    cargo fuzz run --sanitizer "$sanitizer" "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536
done
