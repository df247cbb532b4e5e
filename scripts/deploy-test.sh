#!/usr/bin/env bash
# Builds the image offline (scripts/docker-build.sh) and tests Kiln as it is deployed:
# `docker run` (health, classification, metrics, non-root, configuration by environment,
# the drain on `docker stop`), deploy/compose.yaml (Prometheus scraping Kiln),
# deploy/scale-out (three replicas behind nginx, one stopped and one killed under load)
# and deploy/kubernetes (every manifest validated offline, the probes and the KServe
# runtime run against the image). Installs docker-compose and debootstrap from Debian and
# the tests' Python packages into target/deploy-venv on first use.
#
# With --binary, the image under test is the Dockerfile's runtime stage with that binary
# (scripts/docker-build.sh --binary): scripts/test.sh passes the test build's, so the suite
# compiles Kiln once; alone, the script builds the image as users do, release build inside.
#
#   scripts/deploy-test.sh [--binary PATH] [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
source scripts/lib/steps.sh

need_packages docker-compose debootstrap
need_deploy_venv
if [ "${1:-}" = --binary ]; then
    step "Docker image (runtime stage + test binary)" scripts/docker-build.sh --binary "$2"
    shift 2
else
    step "Docker image (the release build)" scripts/docker-build.sh
fi
step "deployment tests" target/deploy-venv/bin/pytest -q tests/deploy "$@"
