#!/usr/bin/env bash
# Instructions per request: Cloakroom under callgrind, driven by wrk
# (HTTP/1.1 keep-alive, 8 connections) for a few seconds per scenario.
# Counts user-space instructions only, and is repeatable whatever else the
# machine is doing, so it shows what a change to the request path costs even
# on a busy machine (bench/run.sh measures time and needs a quiet one).
#
#   bench/instructions.sh                # SECONDS_EACH=3 per scenario
#   SECONDS_EACH=10 bench/instructions.sh
#   CONFIG=my.toml LOG=warn,cloakroom::access=info bench/instructions.sh
#                                        # another config (listening on
#                                        # 127.0.0.1:3901) and log filter
#   SESSIONS=300 bench/instructions.sh   # the session scenarios rotate over
#                                        # 300 sessions' cookies, as
#                                        # bench/run.sh's do (default 1: one
#                                        # hot cookie)
#   CLOAKROOM_BIN=target/pgo/release/cloakroom bench/instructions.sh
#                                        # another Cloakroom binary (e.g.
#                                        # bench/pgo.sh's); not built here
#   TARGET=nginx bench/instructions.sh   # nginx (bench/nginx.conf, one
#                                        # worker process) under the same
#                                        # load, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${SECONDS_EACH:-3}
SESSIONS=${SESSIONS:-1}
CONFIG=${CONFIG:-bench/proxy.bench.toml}
LOG=${LOG:-warn}
TARGET=${TARGET:-cloakroom}
CLOAKROOM_BIN=${CLOAKROOM_BIN:-}
UPSTREAM=127.0.0.1:3900
case $TARGET in
cloakroom) PROXY=127.0.0.1:3901 ;;
nginx) PROXY=127.0.0.1:3902 ;;
*)
    echo "TARGET must be cloakroom or nginx, not '$TARGET'" >&2
    exit 1
    ;;
esac
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need valgrind valgrind
need wrk wrk
[[ $TARGET == cloakroom ]] || need nginx nginx-light

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

# Another process on these ports would be measured in place of ours (and
# disturbed): refuse, as bench/run.sh does.
for addr in "$UPSTREAM" "$PROXY"; do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then
        echo "something already listens on $addr; stop it first" >&2
        exit 1
    fi
done

if [[ -n $CLOAKROOM_BIN ]]; then
    [[ -x $CLOAKROOM_BIN ]] || { echo "CLOAKROOM_BIN ($CLOAKROOM_BIN) is not an executable" >&2; exit 1; }
    cargo build --release --quiet --example bench_upstream
else
    cargo build --release --quiet --bin cloakroom --example bench_upstream
    CLOAKROOM_BIN=./target/release/cloakroom
fi
./target/release/examples/bench_upstream "$UPSTREAM" >"$work/upstream.log" 2>&1 &
pids+=($!)
wait_port "$UPSTREAM"
if [[ $TARGET == cloakroom ]]; then
    RUST_LOG=$LOG valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="${CALLGRIND_OUT:-$work/callgrind.out}" \
        "$CLOAKROOM_BIN" --config "$CONFIG" >/dev/null 2>&1 &
else
    # One worker process and no master: callgrind follows one process,
    # whose instructions are then all of nginx's.
    mkdir -p "$work/nginx/tmp"
    sed -e "s/@LISTEN@/$PROXY/; s/@UPSTREAM@/$UPSTREAM/" \
        -e 's/^worker_processes auto;/worker_processes 1; master_process off;/' \
        bench/nginx.conf >"$work/nginx/nginx.conf"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="${CALLGRIND_OUT:-$work/callgrind.out}" \
        nginx -p "$work/nginx/" -c "$work/nginx/nginx.conf" >/dev/null 2>&1 &
fi
pids+=($!)
wait_port "$PROXY"

login() {
    curl -s -D - -o /dev/null "http://$PROXY/login" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p'
}
if [[ $TARGET == cloakroom ]]; then
    cookie=$(login)
else
    # nginx passes any cookie on: one of the same length as Cloakroom's.
    cookie="sid=s%3A$(printf 'A%.0s' {1..43}).$(printf 'B%.0s' {1..43})"
    login() { echo "$cookie"; }
fi
# With SESSIONS > 1, the session scenarios send each request with the next
# cookie of this list (bench/measure.lua's BENCH_COOKIES).
cookies=$work/cookies
echo "$cookie" >"$cookies"
for ((made = 1; made < SESSIONS; made++)); do login >>"$cookies"; done

# Instructions the proxy has executed since the counters were zeroed,
# summed over its threads.
instructions() {
    callgrind_control -e "${pids[1]}" 2>/dev/null | awk '/^ *Th / { gsub(/,/, "", $3); sum += $3 } END { print sum + 0 }'
}

measure() { # name, path, cookie
    local name=$1 path=$2 cookie=$3 list=
    [[ -z $cookie || $SESSIONS -le 1 ]] || list=$cookies
    export BENCH_COOKIES=$list
    BENCH_COOKIE=$cookie wrk -t 1 -c 8 -d 1 -s bench/measure.lua "http://$PROXY$path" >/dev/null 2>&1 # warm-up
    callgrind_control -i on "${pids[1]}" >/dev/null
    callgrind_control -z "${pids[1]}" >/dev/null
    local before after
    before=$(instructions)
    BENCH_COOKIE=$cookie wrk -t 1 -c 8 -d "$SECONDS_EACH" -s bench/measure.lua "http://$PROXY$path" >"$work/wrk.txt" 2>&1
    after=$(instructions)
    local requests errors
    requests=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$work/wrk.txt")
    errors=$(sed -n 's/^BENCH .*socket_errors=\([0-9]*\) status_errors=\([0-9]*\).*/\1 + \2/p' "$work/wrk.txt")
    [[ -n $requests && $requests -gt 0 ]] || { echo "wrk made no requests for $name" >&2; exit 1; }
    printf '| %s | %s | %s | %s |\n' "$name" "$requests" "$(((after - before) / requests))" "$((${errors:-0}))"
}

echo "Instructions per request of $TARGET (user space, callgrind), wrk -t 1 -c 8 for ${SECONDS_EACH}s per scenario, session cookies rotating over $SESSIONS session(s)"
echo
echo "| scenario | requests | instructions per request | errors |"
echo "|---|---:|---:|---:|"
measure anonymous / ""
measure session-read / "$cookie"
measure session-write /write "$cookie"
