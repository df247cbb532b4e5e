#!/usr/bin/env bash
# Checks the CNN zoo against PyTorch: torchvision's AlexNet, VGG-11, GoogLeNet, ResNet-18/50
# and Inception v3 with seeded random weights, loaded into PyTorch and into a real kiln
# binary, must give the same logits; and EfficientNet-Lite0 with its real ImageNet weights
# must classify scikit-image's photos; and the text-direction classifier generated from its
# ONNX file must give onnxruntime's output. Installs PyTorch (CPU use of PyPI's wheel),
# torchvision, safetensors, scikit-image, onnx and onnxruntime into a virtual environment
# under target/ on first use, and the EfficientNet-Lite0 weights if missing.
#
#   scripts/parity.sh [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/torch-venv
if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c 'import torchvision, skimage, safetensors, onnx, onnxruntime' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'torch==2.15.*' 'torchvision==0.29.*' 'safetensors==0.8.*' 'scikit-image==0.26.*' \
        'pytest==9.*' 'onnxruntime==1.32.*' numpy onnx
fi
# The same features as the test suite, so the binary it built is reused.
cargo build --quiet --workspace --bins --features kiln-zoo/train,kiln-zoo/fault-injection
[ -f models/efficientnet-lite0/weights.bpk ] || KILN_BIN=target/debug/kiln scripts/fetch-weights.sh efficientnet-lite0
KILN_BIN=target/debug/kiln "$venv/bin/pytest" -q tests/parity "$@"
