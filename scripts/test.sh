#!/usr/bin/env bash
# Runs Kiln's test suite on a fresh machine: installs what the tests need first
# (Debian's Fashion-MNIST, SWORD Bible texts and Prometheus packages, cargo-nextest;
# Triton's Python clients, and PyTorch with torchvision, in virtual environments; the
# EfficientNet-Lite0 weights), then runs every test: the Rust suite, the interop suite that
# drives the kiln binary with tritonclient over HTTP and gRPC, the GPU suite on Mesa's software
# Vulkan (wgpu against the CPU backend, half precision, the memory limit), the parity suite that
# checks the CNN zoo against PyTorch, and the deployment suite that builds the Docker image
# offline and runs it with docker run, compose (Prometheus, nginx) and the Kubernetes manifests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: the Fashion-MNIST data set, the World English Bible and Reina-Valera 1909
# (the language models' corpora), and Prometheus for the scrape test.
missing=()
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
[ -d /usr/share/sword/modules/texts/ztext/engWEB2015eb ] || missing+=(sword-text-web)
[ -d /usr/share/sword/modules/texts/ztext/spaRV1909eb ] || missing+=(sword-text-sparv)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

cargo nextest run --workspace --features kiln-zoo/train,kiln-zoo/fault-injection "$@"
scripts/gpu-test.sh
scripts/interop.sh
scripts/parity.sh
scripts/deploy-test.sh
