#!/usr/bin/env bash
# One-shot GPU benchmark: Kiln serving LeNet-5, ResNet-50, GoogLeNet and EfficientNet-Lite0 on
# wgpu (through NVIDIA's Vulkan driver) and on CUDA, driven by the load generator at
# concurrency 1–256, beside PyTorch eager on the same GPU, networks and weights at batch
# 1–256, with board power sampled through NVML
# (nvidia-smi). Writes gpu-bench.csv and gpu-bench.json (img/s, p99, img/s/W per model,
# runtime and batch) into OUT_DIR (default: $OUT where set, else target/gpu-bench).
# Within 8 minutes with the binaries built; nothing is fetched from outside.
#
#   scripts/gpu-bench.sh [OUT_DIR]
#
# Needs python3 with PyTorch, an NVIDIA driver, and for wgpu the Vulkan loader: where
# `ldconfig -p` lists no libvulkan, the .deb files of libvulkan1 (and what it needs) in
# .gl/ are unpacked first. KILN_BIN and LOADTEST_BIN name prebuilt binaries; without them
# this builds them with KILN_FEATURES (default kiln-server/wgpu,kiln-server/cuda; both build
# offline). CUDA kernels are compiled at run time by NVRTC: where the CUDA toolkit is not
# installed, the libnvrtc of PyTorch's nvidia-* wheels is put on LD_LIBRARY_PATH.
# A backend the binary lacks, or that cannot open the GPU (no Vulkan driver for NVIDIA, say),
# is reported with the server's own message and skipped.
# BACKENDS, MODELS, LEVELS and SECONDS_PER_LEVEL override the sweep (wgpu,cuda; all four;
# 1,4,16,64,256; 2 s per level).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${OUT:-target/gpu-bench}}
mkdir -p "$out"
if ! ldconfig -p | grep -q libvulkan && compgen -G ".gl/*.deb" >/dev/null; then
    for deb in .gl/*.deb; do dpkg -x "$deb" /; done
    ldconfig
fi
# Containers often hold NVIDIA's Vulkan driver where the loader does not look.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
    export VK_DRIVER_FILES=$nvidia_icd
fi

# NVRTC from PyTorch's wheels (nvidia/cuda_nvrtc/lib, or nvidia/cu13/lib in CUDA 13 wheels).
nvrtc_dirs=$(python3 - <<'EOF' || true
import glob, os, site, sysconfig
roots = {sysconfig.get_paths()["purelib"], *site.getsitepackages(), site.getusersitepackages()}
found = {os.path.dirname(p) for root in roots
         for p in glob.glob(os.path.join(root, "nvidia", "**", "libnvrtc.so*"), recursive=True)}
print(":".join(sorted(found)))
EOF
)
if [ -n "$nvrtc_dirs" ]; then
    export LD_LIBRARY_PATH=$nvrtc_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

kiln=${KILN_BIN:-}
loadtest=${LOADTEST_BIN:-}
if [ -z "$kiln" ] || [ -z "$loadtest" ]; then
    cargo build --release --quiet -p kiln-server -p kiln-loadtest \
        --features "${KILN_FEATURES:-kiln-server/wgpu,kiln-server/cuda}"
    kiln=target/release/kiln
    loadtest=target/release/kiln-loadtest
fi

PYTHONUNBUFFERED=1 python3 bench/gpu/gpu_bench.py --kiln "$kiln" --loadtest "$loadtest" \
    --out "$out" --backends "${BACKENDS:-wgpu,cuda}" \
    --models "${MODELS:-lenet-fashion,resnet-50,googlenet,efficientnet-lite0}" --levels "${LEVELS:-1,4,16,64,256}" \
    --seconds "${SECONDS_PER_LEVEL:-2}"
column -s, -t "$out/gpu-bench.csv" 2>/dev/null || cat "$out/gpu-bench.csv"
