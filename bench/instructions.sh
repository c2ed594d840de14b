#!/usr/bin/env bash
# Instructions per request: Cloakroom under callgrind, a fixed number of
# requests per scenario. Counts user-space instructions only, and is
# repeatable whatever else the machine is doing, so it shows what a change
# to the request path costs even on a busy machine (bench/run.sh measures
# time and needs a quiet one).
#
#   bench/instructions.sh            # N=4000 requests per scenario
#   N=10000 bench/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-4000}
UPSTREAM=127.0.0.1:3900
PROXY=127.0.0.1:3901
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
need ab apache2-utils

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

cargo build --release --quiet --bin cloakroom --example bench_upstream
./target/release/examples/bench_upstream "$UPSTREAM" >"$work/upstream.log" 2>&1 &
pids+=($!)
wait_port "$UPSTREAM"
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
    ./target/release/cloakroom --config bench/proxy.bench.toml >"$work/proxy.log" 2>&1 &
pids+=($!)
wait_port "$PROXY"

cookie=$(curl -s -D - -o /dev/null "http://$PROXY/login" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p')
[[ -n $cookie ]] || { echo "no session cookie from /login" >&2; exit 1; }

# Instructions the proxy has executed since the counters were zeroed,
# summed over its threads.
instructions() {
    callgrind_control -e "${pids[1]}" 2>/dev/null | awk '/^ *Th / { gsub(/,/, "", $3); sum += $3 } END { print sum + 0 }'
}

measure() { # name, then ab arguments
    local name=$1
    shift
    ab -q -k -c 8 -n 200 "$@" >/dev/null 2>&1 # warm-up
    callgrind_control -i on "${pids[1]}" >/dev/null
    callgrind_control -z "${pids[1]}" >/dev/null
    local before after
    before=$(instructions)
    ab -q -k -c 8 -n "$N" "$@" >"$work/ab.txt" 2>&1
    after=$(instructions)
    local failed
    failed=$(awk '/^Failed requests/ { print $3 }' "$work/ab.txt")
    printf '| %s | %s | %s |\n' "$name" "$(((after - before) / N))" "${failed:-?}"
}

echo "Instructions per request (user space, callgrind), $N requests per scenario, ab -k -c 8"
echo
echo "| scenario | instructions per request | failed |"
echo "|---|---:|---:|"
measure anonymous "http://$PROXY/"
measure session-read -H "Cookie: $cookie" "http://$PROXY/"
measure session-write -H "Cookie: $cookie" "http://$PROXY/write"
