#!/usr/bin/env bash
# Turns each bundled ONNX file into Burn code with burn-onnx's `onnx2burn` (installed into
# target/tools on first use, burn-onnx 0.22.0) and writes it into the kiln-onnx crate: the
# network's Rust source and its weights as burnpack, embedded in the binary. The generated
# files are committed, so building Kiln needs no ONNX tooling; run this after changing an
# ONNX file, and the crate's test (`generated_from_the_bundled_onnx_file`) checks that the
# committed code was generated from the file as it is now.
#
#   scripts/onnx-codegen.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/tools
if [ ! -x "$tools/bin/onnx2burn" ]; then
    cargo install --quiet --locked --root "$tools" --version =0.22.0 burn-onnx --bin onnx2burn
fi

# generate ONNX_FILE MODULE_FOLDER
generate() {
    local onnx=$1 folder=$2 work
    work=$(mktemp -d)
    "$tools/bin/onnx2burn" "$onnx" "$work" --no-development --embed-states >/dev/null
    mkdir -p "$folder"
    cp "$work/model.bpk" "$folder/model.bpk"
    # The generated code names its weights by the absolute path it wrote them to; the
    # committed copy names the file beside it.
    sed -e "s#\"$work/model.bpk\"#\"model.bpk\"#g" \
        -e "1s#.*#// Generated from ONNX \"$onnx\" by burn-onnx 0.22.0 (scripts/onnx-codegen.sh); do not edit.#" \
        "$work/model.rs" >"$folder/model.rs"
    printf '\n/// CRC-32 of the ONNX file this code was generated from.\npub const GENERATED_FROM_CRC32: u32 = 0x%s;\n' \
        "$(python3 -c 'import sys, zlib; print(format(zlib.crc32(open(sys.argv[1], "rb").read()), "08x"))' "$onnx")" \
        >>"$folder/model.rs"
    rustfmt --edition 2024 "$folder/model.rs"
    rm -rf "$work"
}

generate models/text-direction/model.onnx onnx-models/src/text_direction
echo "generated onnx-models/src/text_direction/"
