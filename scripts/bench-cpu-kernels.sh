#!/usr/bin/env bash
# The bundled CNNs served with Kiln's CPU kernels and with Burn's ops (KILN_CPU_KERNELS=off),
# one after the other on this machine, the same load generator sweep for both: LeNet-5 with
# the Fashion-MNIST images of examples/images/, and EfficientNet-Lite0 with scikit-image's
# photos when its weights are in models/ (scripts/fetch-weights.sh efficientnet-lite0).
#
#   scripts/bench-cpu-kernels.sh [LENET_SWEEP] [LITE0_SWEEP]     (default 1:64:x4 and 1:16:x4)
#
# Prints each sweep and a summary line per run: peak img/s, best img/s within a p99 of 25 ms
# (LeNet) or 250 ms (EfficientNet-Lite0), and images per joule estimated from the server's
# CPU seconds at 10 W per busy core. Needs target/torch-venv (scripts/parity.sh makes it)
# for the photos and the CPU-seconds reader.
set -euo pipefail
cd "$(dirname "$0")/.."
lenet_sweep=${1:-1:64:x4}
lite0_sweep=${2:-1:16:x4}
py=target/torch-venv/bin/python
[ -x "$py" ] || { echo "target/torch-venv is missing: run scripts/parity.sh once" >&2; exit 1; }
cargo build --release -p kiln-server -p kiln-loadtest --quiet
work=$(mktemp -d)
photos="$work/photos"
mkdir -p "$photos"
skimage_data=$("$py" -c 'import os, skimage; print(os.path.dirname(skimage.__file__) + "/data")')
for photo in chelsea.png coffee.png rocket.jpg motorcycle_left.png astronaut.png; do
    cp "$skimage_data/$photo" "$photos/"
done

for kernels in on off; do
    log="$work/kiln-$kernels.log"
    KILN_CPU_KERNELS=$kernels ./target/release/kiln serve --http-addr 127.0.0.1:0 \
        --grpc-addr 127.0.0.1:0 >"$log" 2>&1 &
    server=$!
    addr=""
    for _ in $(seq 600); do
        addr=$(sed -n 's/.*kiln listening.*http=\([0-9.:]*\).*/\1/p' "$log" | head -1)
        [ -n "$addr" ] && curl -sf "http://$addr/v2/health/ready" >/dev/null && break
        sleep 0.2
    done
    [ -n "$addr" ] || { cat "$log"; kill "$server"; exit 1; }
    # measure MODEL SWEEP INPUTS NAME ROWS: one sweep printed, with the server's CPU seconds
    # around it; its summary row is appended to the file ROWS.
    measure() {
        local before after
        before=$("$py" bench/peers/cpu_seconds.py "$server")
        ./target/release/kiln-loadtest --model "$1" --concurrency "$2" --inputs "$3" \
            --url "http://$addr" --form http-binary --output-dir "$work/$4" 2>/dev/null | sed "s/^/$4  /"
        after=$("$py" bench/peers/cpu_seconds.py "$server")
        echo "$4=$work/$4:$(awk "BEGIN {print $after - $before}")" >>"$5"
    }
    measure lenet-fashion "$lenet_sweep" examples/images "lenet-kernels-$kernels" "$work/lenet.rows"
    if [ -f models/efficientnet-lite0/weights.bpk ]; then
        measure efficientnet-lite0 "$lite0_sweep" "$photos" "lite0-kernels-$kernels" "$work/lite0.rows"
    fi
    kill "$server"; wait "$server" 2>/dev/null || true
done
echo
mapfile -t rows <"$work/lenet.rows"
"$py" bench/peers/summarize.py 10 --p99-limit-ms 25 "${rows[@]}"
if [ -f "$work/lite0.rows" ]; then
    mapfile -t rows <"$work/lite0.rows"
    "$py" bench/peers/summarize.py 10 --p99-limit-ms 250 "${rows[@]}"
fi
rm -rf "$work"
