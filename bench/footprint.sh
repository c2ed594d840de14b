#!/usr/bin/env bash
# Memory footprint: the resident memory (RSS) of a Cloakroom process with
# the memory store, before and after N signed-in sessions are created, and
# what that makes per session. Each session is `{"user":"alice"}`, so each
# is also a member of the user index. Counts memory, not time: it can run
# on a busy machine.
#
#   bench/footprint.sh                   # 1,000,000 sessions
#   SESSIONS=100000 bench/footprint.sh
#
# Prints a Markdown table on stdout; progress goes to stderr; the logs and
# the config of the last run stay in bench/results/footprint/.
set -euo pipefail

SESSIONS=${SESSIONS:-1000000}   # sessions to create
CONNECTIONS=${CONNECTIONS:-64}  # h2load connections (-c)
SETTLE=${SETTLE:-3}             # seconds to wait after the load, before reading RSS

# Away from bench/run.sh's fixed ports, so both can run at once.
UPSTREAM_ADDR=127.0.0.1:3910
CLOAKROOM_ADDR=127.0.0.1:3911
OPS_ADDR=127.0.0.1:3912

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_DIR/bench
RUN_DIR=$BENCH_DIR/results/footprint
# Binaries are where cargo puts them (CARGO_TARGET_DIR, if set).
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}

declare -A PID=() # what this script started: name -> PID

SCRIPT=footprint.sh
# shellcheck source=bench/processes.sh
. "$BENCH_DIR/processes.sh"

stop_everything() { stop_started; }

require_tools() {
    local tool
    for tool in h2load curl cargo; do
        command -v "$tool" >/dev/null || die "needs $tool (h2load: Debian's nghttp2-client)"
    done
}

build_binaries() {
    log "building cloakroom and bench_upstream (release)"
    (cd "$REPO_DIR" && cargo build --release --quiet --bin cloakroom --example bench_upstream)
}

start_upstream() {
    require_free_port "$UPSTREAM_ADDR"
    "$TARGET_DIR/release/examples/bench_upstream" "$UPSTREAM_ADDR" \
        >"$RUN_DIR/upstream.log" 2>&1 &
    PID[upstream]=$!
    wait_for_port upstream "$UPSTREAM_ADDR"
}

# bench/proxy.bench.toml on this script's addresses, with room for every
# session (so none is evicted) and [ops] for /metrics.
start_cloakroom() {
    require_free_port "$CLOAKROOM_ADDR"
    require_free_port "$OPS_ADDR"
    local config=$RUN_DIR/proxy.footprint.toml
    awk -v listen="$CLOAKROOM_ADDR" -v upstream="http://$UPSTREAM_ADDR" \
        -v max=$((SESSIONS + SESSIONS / 4 + 1024)) '
        /^\[/ { table = $0 }
        table == "[server]" && /^listen = / { print "listen = \"" listen "\""; next }
        table == "[upstream]" && /^url = / { print "url = \"" upstream "\""; next }
        table == "[store]" && /^max_sessions = / { print "max_sessions = " max; next }
        { print }' "$BENCH_DIR/proxy.bench.toml" >"$config"
    printf '\n[ops]\nlisten = "%s"\n' "$OPS_ADDR" >>"$config"
    grep -q "^listen = \"$CLOAKROOM_ADDR\"" "$config" || die "could not set server.listen in $config"
    # Only the secret in the bench config, whatever this shell exports.
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$TARGET_DIR/release/cloakroom" \
        --config "$config" >"$RUN_DIR/cloakroom.log" 2>&1 &
    PID[cloakroom]=$!
    wait_for_port cloakroom "$CLOAKROOM_ADDR"
}

status_kib() { # field of /proc/PID/status (VmRSS, VmHWM) -> its value in KiB
    awk -v field="$1:" '$1 == field { print $2 }' "/proc/${PID[cloakroom]}/status"
}

live_sessions() {
    curl -sS "http://$OPS_ADDR/metrics" | awk '$1 == "cloakroom_live_sessions" { print $2 }'
}

create_sessions() {
    log "creating $SESSIONS sessions: h2load --h1 -n $SESSIONS -c $CONNECTIONS /login-alice"
    h2load --h1 -n "$SESSIONS" -c "$CONNECTIONS" "http://$CLOAKROOM_ADDR/login-alice" \
        >"$RUN_DIR/h2load.txt" 2>&1 || die "h2load failed; see $RUN_DIR/h2load.txt"
    local succeeded
    succeeded=$(awk '/^requests: / { for (i = 1; i < NF; i++) if ($(i + 1) == "succeeded,") print $i }' \
        "$RUN_DIR/h2load.txt")
    if [[ $succeeded != "$SESSIONS" ]]; then
        grep -E '^(requests|status codes): ' "$RUN_DIR/h2load.txt" >&2 || true
        die "only ${succeeded:-0} of $SESSIONS requests succeeded; see $RUN_DIR/h2load.txt"
    fi
    kill -0 "${PID[cloakroom]}" 2>/dev/null || die "cloakroom exited; see $RUN_DIR/cloakroom.log"
}

mb() { awk -v kib="$1" 'BEGIN { printf "%.1f", kib / 1024 }'; }

render_table() { # before-KiB after-KiB peak-KiB live
    local before=$1 after=$2 peak=$3 live=$4 commit
    commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo "none yet")
    cat <<EOF
Memory footprint, commit $commit (working tree as built): $SESSIONS sessions of {"user":"alice"}, h2load --h1 -c $CONNECTIONS

| sessions | RSS before (MB) | RSS after (MB) | peak RSS (MB) | live sessions | bytes per session |
|---:|---:|---:|---:|---:|---:|
EOF
    printf '| %s | %s | %s | %s | %s | %s |\n' "$SESSIONS" "$(mb "$before")" "$(mb "$after")" \
        "$(mb "$peak")" "$live" "$(((after - before) * 1024 / SESSIONS))"
}

main() {
    [[ $SESSIONS =~ ^[1-9][0-9]*$ ]] || die "SESSIONS must be a positive number, not '$SESSIONS'"
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    trap stop_everything EXIT
    trap 'exit 130' INT TERM

    require_tools
    build_binaries
    start_upstream
    start_cloakroom
    sleep 1
    local before after peak live
    before=$(status_kib VmRSS)
    create_sessions
    sleep "$SETTLE"
    after=$(status_kib VmRSS)
    peak=$(status_kib VmHWM)
    live=$(live_sessions)
    if [[ -s $RUN_DIR/cloakroom.log ]]; then
        log "cloakroom logged (the first lines):"
        head -n 5 "$RUN_DIR/cloakroom.log" >&2
    fi
    render_table "$before" "$after" "$peak" "${live:-unknown}"
}

main "$@"
