# Sourced by .ci/run and scripts/test.sh: runs named steps, times each, and prints a table of
# them at the end. Steps append to $KILN_STEPS_FILE, so a table covers nested scripts too.

# The outermost script that sources this file owns the table and prints it when it exits.
if [ -z "${KILN_STEPS_FILE:-}" ]; then
    KILN_STEPS_FILE=$(mktemp)
    export KILN_STEPS_FILE
    trap 'status=$?; print_steps; rm -f "$KILN_STEPS_FILE"; exit $status' EXIT
fi

# step NAME COMMAND...: runs the command; records NAME, its seconds and how it ended.
step() {
    local name=$1 began=$SECONDS status=0
    shift
    echo "== $(date -u +%T) $name (disk free: $(df -h --output=avail . | tail -1 | tr -d ' '))"
    "$@" || status=$?
    printf '%s\t%d\t%s\n' "$name" $((SECONDS - began)) \
        "$([ $status -eq 0 ] && echo ok || echo "failed ($status)")" >>"$KILN_STEPS_FILE"
    return $status
}

# note_step NAME SECONDS OUTCOME: records a step that ran elsewhere (in the background).
note_step() { printf '%s\t%d\t%s\n' "$1" "$2" "$3" >>"$KILN_STEPS_FILE"; }

print_steps() {
    local total=0 name secs outcome
    echo
    printf '%-44s %9s  %s\n' step duration outcome
    while IFS=$'\t' read -r name secs outcome; do
        printf '%-44s %6d:%02d  %s\n' "$name" $((secs / 60)) $((secs % 60)) "$outcome"
    done <"$KILN_STEPS_FILE"
    total=$SECONDS
    printf '%-44s %6d:%02d\n' "total (wall clock)" $((total / 60)) $((total % 60))
}
