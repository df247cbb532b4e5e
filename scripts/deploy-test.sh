#!/usr/bin/env bash
# Builds the image offline (scripts/docker-build.sh) and tests it as users run it:
# `docker run`, health, classification, metrics, non-root, configuration by environment,
# and the drain on `docker stop`. Installs pytest into target/deploy-venv on first use.
#
#   scripts/deploy-test.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/deploy-venv
if [ ! -x "$venv/bin/pytest" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'pytest==9.*'
fi
scripts/docker-build.sh
"$venv/bin/pytest" -q tests/deploy "$@"
