#!/usr/bin/env bash
# The CUDA build's dependency graph holds cubecl-cuda (the NVRTC kernel compiler) and no
# llvm-sys, whose build script would download an LLVM bundle from GitHub (README, "GPUs").
# Resolves the graph only; compiles nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree --locked -p kiln-server --features cuda --prefix none -e normal,build)
grep -q '^cubecl-cuda ' <<<"$tree" || { echo "cubecl-cuda is missing from the cuda build" >&2; exit 1; }
if grep -E '^(llvm-sys|tracel-llvm-bundler|pliron-llvm) ' <<<"$tree"; then
    echo "the cuda build depends on LLVM (above): see patches/cubecl-llvm" >&2
    exit 1
fi
echo "the cuda build resolves with cubecl-cuda and without llvm-sys"
