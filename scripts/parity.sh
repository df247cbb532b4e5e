#!/usr/bin/env bash
# Checks the CNN zoo against PyTorch: torchvision's AlexNet, VGG-11, GoogLeNet, ResNet-18/50
# and Inception v3 with seeded random weights, loaded into PyTorch and into a real kiln
# binary, must give the same logits; and EfficientNet-Lite0 with its real ImageNet weights
# must classify scikit-image's photos; and the text-direction classifier generated from its
# ONNX file must give onnxruntime's output. Installs PyTorch (CPU use of PyPI's wheel),
# torchvision, safetensors, scikit-image, onnx and onnxruntime into a virtual environment
# under target/ on first use, and the EfficientNet-Lite0 weights if missing. The binary is
# the test build's (a no-op build after scripts/test.sh's Rust build).
#
#   scripts/parity.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/setup.sh

need_torch_venv
need_test_binaries
[ -f models/efficientnet-lite0/weights.bpk ] || KILN_BIN=target/debug/kiln scripts/fetch-weights.sh efficientnet-lite0
KILN_BIN=target/debug/kiln target/torch-venv/bin/pytest -q tests/parity "$@"
