#!/usr/bin/env bash
# Drives a real kiln binary with Triton's own Python clients (tritonclient, HTTP and gRPC).
# Installs them into a virtual environment under target/ on first use.
#
#   scripts/interop.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/interop-venv
if [ ! -x "$venv/bin/pytest" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'tritonclient[http,grpc]==2.73.0' 'pytest==8.*' numpy
fi
# The same features as the test suite, so the binary it built is reused.
cargo build --quiet --workspace --bins --features kiln-zoo/train,kiln-zoo/fault-injection
KILN_BIN=target/debug/kiln "$venv/bin/pytest" -q tests/interop "$@"
