#!/usr/bin/env bash
# Kiln's GPU code paths on a machine without a GPU: runs server/tests/gpu_backends.rs on
# Mesa's software Vulkan (lavapipe) — every bundled model on wgpu against the CPU backend,
# f16/bf16 against f32 on the Fashion-MNIST test set, the device memory limit, and
# `kiln serve --backend wgpu` end to end with its kernel cache. The test build's features
# include wgpu, so scripts/test.sh runs this suite within its Rust suite; this script runs
# it alone. Installs Debian's mesa-vulkan-drivers, libvulkan1 and the Fashion-MNIST package
# first if missing.
#
#   scripts/gpu-test.sh [NEXTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh

need_packages mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist
need_nextest
# The tests print the adapter they ran on (wgpu falls back to OpenGL when Vulkan is missing).
# Mesa's window-system code asks for a session folder; a private one keeps its log quiet.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
cargo nextest run --workspace --features "$KILN_TEST_FEATURES" --test gpu_backends "$@"
