# Sourced by the measurement scripts. wait_ready LOG: waits, up to a minute, until the
# server writing LOG says where it listens and answers ready there; sets $base (its HTTP
# URL) and $grpc_base (its gRPC URL), or prints the log and exits.
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
