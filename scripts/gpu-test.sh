#!/usr/bin/env bash
# Kiln's GPU code paths on a machine without a GPU: builds the server with the wgpu backend
# and runs server/tests/gpu_backends.rs on Mesa's software Vulkan (lavapipe) — every bundled
# model on wgpu against the CPU backend, f16/bf16 against f32 on the Fashion-MNIST test set,
# the device memory limit, and `kiln serve --backend wgpu` end to end with its kernel cache.
# (The CUDA build needs GitHub for CubeCL's LLVM bundle; where it builds, add `--features
# wgpu,cuda` to also check that `--backend cuda` refuses clearly without an NVIDIA GPU;
# offline, `DOCS_RS=1 cargo clippy -p kiln-server --all-targets --features wgpu,cuda`
# type-checks the CUDA code without that download.)
# Installs Debian's mesa-vulkan-drivers and libvulkan1 first if missing.
#
#   scripts/gpu-test.sh [NEXTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null \
    || ! compgen -G "/usr/lib/*/libvulkan.so.1" >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
# The tests print the adapter they ran on (wgpu falls back to OpenGL when Vulkan is missing).
# Mesa's window-system code asks for a session folder; a private one keeps its log quiet.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
cargo nextest run -p kiln-server --features wgpu --test gpu_backends "$@"
