# Sourced by the benchmark scripts: the load generator runs on a core of its own (the
# last) and the server on the others, as they would on machines of their own. Sharing
# cores, a loaded server starves the load generator, whose lateness to send and to read
# then reads as the server's latency. Sets `server_pin` and `load_pin`, command prefixes
# (empty with PIN=0 or on one core).
server_pin=()
load_pin=()
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    last_cpu=$(($(nproc) - 1))
    server_pin=(taskset -c "0-$((last_cpu - 1))")
    load_pin=(taskset -c "$last_cpu")
    echo "server on CPUs 0-$((last_cpu - 1)), load generator on CPU $last_cpu (PIN=0 shares them)"
fi
