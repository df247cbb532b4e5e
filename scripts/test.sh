#!/usr/bin/env bash
# Kiln's test suite on a fresh machine. Installs what the tests need when it is missing —
# Debian's Fashion-MNIST, the SWORD Bibles, Prometheus, Mesa's software Vulkan, Chromium,
# docker-compose and debootstrap; cargo-nextest; Triton's and OpenAI's Python clients, PyTorch with
# torchvision and onnxruntime, and the deployment tests' packages in virtual environments
# under target/; the EfficientNet-Lite0 weights — then runs every suite:
#   1. the Rust suite (cargo nextest): unit and integration tests, the fuzzers' kept inputs
#      replayed, and the GPU suite (wgpu on Mesa's software Vulkan against the CPU backend);
#   2. interop: Triton's own clients (tritonclient, HTTP and gRPC) and the official `openai`
#      client against the kiln binary;
#   3. parity: the CNN zoo against PyTorch and the ONNX model against onnxruntime;
#   4. browser: the web playground in headless Chromium, driven by Selenium;
#   5. deployment: the Docker image built offline (the Dockerfile's runtime stage with the
#      test build's `kiln`), with docker run, compose, the scaled-out stack and the
#      Kubernetes manifests (a Docker engine must be running).
# Every suite uses the one dev build (features in scripts/lib/setup.sh): Kiln compiles once.
# The Python environments and Docker's base images are prepared in the background while
# the Rust build compiles.
#
#   scripts/test.sh [NEXTEST_ARGS...]             everything
#   scripts/test.sh --quick [NEXTEST_ARGS...]     the Rust tests on the CPU backend only
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh
source scripts/lib/steps.sh

if [ "${1:-}" = --quick ]; then
    shift
    need_packages dataset-fashion-mnist sword-text-web sword-text-sparv prometheus
    need_nextest
    # No wgpu: the GPU suite and the Python suites are left to the full run.
    exec cargo nextest run --workspace --features kiln-server/train,kiln-zoo/fault-injection "$@"
fi

step "install Debian packages, cargo-nextest" bash -c 'source scripts/lib/setup.sh; need_test_packages; need_nextest'

# Downloads that need no CPU to speak of run beside the Rust build.
mkdir -p target/prepare
background() {
    local name=$1
    shift
    ( began=$SECONDS; status=0; "$@" >"target/prepare/$name.log" 2>&1 || status=$?
      echo "$((SECONDS - began)) $status" >"target/prepare/$name.done" ) &
}
wait_background() {
    local name=$1 secs status
    while [ ! -f "target/prepare/$name.done" ]; do sleep 1; done
    read -r secs status <"target/prepare/$name.done"
    note_step "$name (in the background)" "$secs" "$([ "$status" = 0 ] && echo ok || echo "failed ($status)")"
    if [ "$status" != 0 ]; then
        cat "target/prepare/$name.log" >&2
        return 1
    fi
}
rm -f target/prepare/*.done
background python-environments bash -c 'source scripts/lib/setup.sh; need_interop_venv; need_torch_venv; need_deploy_venv'
background docker-base-images scripts/docker-build.sh --base-images-only

# Mesa's window-system code asks for a session folder; a private one keeps its log quiet.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
step "CUDA graph without LLVM (cargo tree)" scripts/check-cuda-deps.sh
step "Rust build (dev, one feature set)" cargo nextest run --no-run --workspace --features "$KILN_TEST_FEATURES"
step "Rust tests (nextest, incl. GPU suite)" cargo nextest run --workspace --features "$KILN_TEST_FEATURES" "$@"
wait_background python-environments
step "interop (tritonclient, openai)" scripts/interop.sh
step "parity (PyTorch, onnxruntime)" scripts/parity.sh
step "browser (playground in Chromium)" scripts/browser-test.sh
wait_background docker-base-images
scripts/deploy-test.sh --binary target/debug/kiln
