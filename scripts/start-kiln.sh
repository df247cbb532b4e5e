# Sourced by the measurement scripts: installs `hey` if missing, builds the release
# server, starts it on a free loopback port with the bundled models, waits until it is
# ready, and sets $server (its pid), $base (its HTTP URL) and $grpc_base (its gRPC URL).
# The server stops when the sourcing script exits; the script's own EXIT trap, set before
# sourcing, runs after that. KILN_BIN names another server binary to run instead (an older
# build, for a same-run comparison).

if ! command -v hey >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq hey; else sudo apt-get install -y -qq hey; fi
fi
kiln_bin=${KILN_BIN:-./target/release/kiln}
[ -n "${KILN_BIN:-}" ] || cargo build --release -p kiln-server --quiet

kiln_log=$(mktemp)
# A sourcing script that pins the server (scripts/lib/pin.sh) runs it on its cores.
${server_pin[@]+"${server_pin[@]}"} "$kiln_bin" serve --http-addr 127.0.0.1:0 \
    --grpc-addr 127.0.0.1:0 >"$kiln_log" 2>&1 &
server=$!
# Whatever the sourcing script already runs on exit (removing its temporary folders) runs too.
earlier_exit=$(trap -p EXIT)
earlier_exit=${earlier_exit#"trap -- '"}
earlier_exit=${earlier_exit%"' EXIT"}
trap 'kill $server 2>/dev/null || true; rm -f "$kiln_log"; '"$earlier_exit" EXIT
source scripts/lib/server.sh
wait_ready "$kiln_log"
