#!/usr/bin/env bash
# The web playground in a real browser: headless Chromium driven by Selenium against the
# kiln binary (tests/browser). Installs Debian's chromium and chromium-driver and the
# Python packages (into target/interop-venv) on first use; the binary is the test build's
# (a no-op build after scripts/test.sh's Rust build). Screenshots: target/browser-artifacts/.
#
#   scripts/browser-test.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh

need_packages chromium chromium-driver
need_interop_venv
need_test_binaries
KILN_BIN=target/debug/kiln target/interop-venv/bin/pytest -q tests/browser "$@"
