#!/usr/bin/env bash
# Builds the image offline (scripts/docker-build.sh) and tests Kiln as it is deployed:
# `docker run` (health, classification, metrics, non-root, configuration by environment,
# the drain on `docker stop`), deploy/compose.yaml (Prometheus scraping Kiln),
# deploy/scale-out (three replicas behind nginx, one stopped and one killed under load)
# and deploy/kubernetes (every manifest validated offline, the probes and the KServe
# runtime run against the image). Installs docker-compose from Debian and the tests'
# Python packages into target/deploy-venv on first use.
#
#   scripts/deploy-test.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v docker-compose >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose
fi
venv=target/deploy-venv
if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c 'import kserve, kubernetes_validate' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'pytest==9.*' \
        'kubernetes-validate==1.37.*' 'kserve==0.21.0' pyyaml
fi
scripts/docker-build.sh
"$venv/bin/pytest" -q tests/deploy "$@"
