# Sourced by the measurement scripts: helpers for a `kiln serve` they started.

# wait_ready LOG: waits, up to a minute, until the server writing LOG says where it listens
# and answers ready there; sets $base (its HTTP URL) and $grpc_base (its gRPC URL), or
# prints the log and exits.
wait_ready() {
    local log=$1 addr
    base=""
    for _ in $(seq 600); do
        addr=$(sed -n 's/.*kiln listening.*http=\([0-9.:]*\).*/\1/p' "$log" | head -1)
        if [ -n "$addr" ] && curl -sf "http://$addr/v2/health/ready" >/dev/null; then
            base="http://$addr"
            grpc_base="http://$(sed -n 's/.*kiln listening.*grpc=\([0-9.:]*\).*/\1/p' "$log" | head -1)"
            return
        fi
        sleep 0.1
    done
    cat "$log" >&2
    exit 1
}

# cpu_ticks PID: the process's CPU time so far, in clock ticks (user + system).
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# thread_ticks PID: per thread name, the CPU time so far of the process's threads of that
# name, in clock ticks (user + system), a "name ticks" line each. The names are Kiln's own
# (a step loop's `kiln-caption-…`, the compute pool's `kiln-cpu-N`, `tokio-rt-worker`).
thread_ticks() {
    local task
    for task in "/proc/$1/task/"*; do
        # The name is in parentheses and may hold spaces; the times follow it.
        sed 's/^[0-9]* (\(.*\)) \(.*\)$/\1\t\2/' "$task/stat" 2>/dev/null |
            awk -F'\t' '{ split($2, f, " "); gsub(/ /, "_", $1); print $1, f[12] + f[13] }'
    done | awk '{ ticks[$1] += $2 } END { for (name in ticks) print name, ticks[name] }' | sort
}
