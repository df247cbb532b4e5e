#!/usr/bin/env bash
# Drives a real kiln binary with Triton's own Python clients (tritonclient, HTTP and gRPC)
# and the official `openai` client.
# Installs them into a virtual environment under target/ on first use, and builds the
# binary with the test build's features (a no-op after scripts/test.sh's Rust build).
#
#   scripts/interop.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh

need_interop_venv
need_test_binaries
KILN_BIN=target/debug/kiln target/interop-venv/bin/pytest -q tests/interop "$@"
