#!/usr/bin/env bash
# Two Cloakroom binaries under the same load, in alternating runs: did a
# change make requests cheaper natively? bench/instructions.sh counts a
# change's user-space instructions exactly, but not the kernel, cache
# misses or the CPU's SHA extensions; bench/run.sh compares Cloakroom with
# nginx, not with itself. Here the two binaries take turns, ROUNDS times
# each, the order alternating (old first in odd rounds), in front of the
# same upstream (and the same redis-server, emptied between runs), so
# that the machine's drift falls on both alike.
#
#   OLD=/tmp/cloakroom-old NEW=target/release/cloakroom bench/compare.sh
#   STORE=redis SCENARIO=session-write OLD=... NEW=... bench/compare.sh
#
# An older commit's binary, for OLD:
#   git worktree add /tmp/old <commit>
#   cargo build --release --bin cloakroom --manifest-path /tmp/old/Cargo.toml \
#       --target-dir /tmp/old-target   # then OLD=/tmp/old-target/release/cloakroom
#
# Each run: the binary starts on bench/proxy.bench.toml (its [store]
# replaced with STORE's), SESSIONS logins make the sessions (GET /login),
# WARMUP seconds of load, then SECONDS_EACH seconds measured: requests/s,
# and CPU per request from /proc (Cloakroom's, plus redis-server's with
# STORE=redis). Prints a Markdown table on stdout (per round, medians and
# their 95% intervals, new ÷ old); progress goes to stderr; logs stay in
# bench/results/compare/.
set -euo pipefail

STORE=${STORE:-memory}                # memory or redis
SCENARIO=${SCENARIO:-session-read}    # anonymous, session-read, session-write or websocket
SESSIONS=${SESSIONS:-1000}            # sessions the session scenarios rotate over
ROUNDS=${ROUNDS:-7}                   # runs of each binary
SECONDS_EACH=${SECONDS_EACH:-8}       # seconds measured per run
WARMUP=${WARMUP:-3}                   # seconds of load before each measurement
THREADS=${THREADS:-2}                 # bench_load threads
CONNECTIONS=${CONNECTIONS:-64}        # bench_load connections
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}

# Away from the other bench scripts' fixed ports.
UPSTREAM_ADDR=127.0.0.1:3926
CLOAKROOM_ADDR=127.0.0.1:3927

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_DIR/bench
RUN_DIR=$BENCH_DIR/results/compare
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}

declare -A PID=() # what this script started: name -> PID

SCRIPT=compare.sh
# shellcheck source=bench/processes.sh
. "$BENCH_DIR/processes.sh"
# shellcheck source=bench/stats.sh
. "$BENCH_DIR/stats.sh"

require_tools() {
    local tool
    for tool in wrk curl cargo awk; do
        command -v "$tool" >/dev/null || die "needs $tool (Debian's wrk, curl)"
    done
    if [[ $STORE == redis ]]; then
        command -v "$REDIS_SERVER" >/dev/null || die "needs $REDIS_SERVER (Debian's redis-server) for STORE=redis"
        command -v "$REDIS_CLI" >/dev/null || die "needs $REDIS_CLI (Debian's redis-tools) for STORE=redis"
    fi
}

# The upstream, the redis-server (STORE=redis) and the configuration both
# binaries run with.
start_shared() {
    require_free_port "$UPSTREAM_ADDR"
    "$TARGET_DIR/release/examples/bench_upstream" "$UPSTREAM_ADDR" >"$RUN_DIR/upstream.log" 2>&1 &
    PID[upstream]=$!
    wait_for_port upstream "$UPSTREAM_ADDR"
    local store
    if [[ $STORE == redis ]]; then
        REDIS_PORT=$(free_port)
        "$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
            --dir "$RUN_DIR" --logfile "" >"$RUN_DIR/redis.log" 2>&1 &
        PID[redis]=$!
        wait_for_port redis "127.0.0.1:$REDIS_PORT"
        store=$(printf 'kind = "redis"\nurl = "redis://127.0.0.1:%s"' "$REDIS_PORT")
    else
        store='kind = "memory"'
    fi
    bench_config "$CLOAKROOM_ADDR" "http://$UPSTREAM_ADDR" "$store" "$RUN_DIR/proxy.compare.toml"
}

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system clock ticks

# Both processes' ticks: Cloakroom's and, with STORE=redis, redis-server's.
all_ticks() {
    local total
    total=$(ticks "${PID[cloakroom]}")
    [[ $STORE != redis ]] || total=$((total + $(ticks "${PID[redis]}")))
    echo "$total"
}

load() { # seconds output
    local cookies=
    if [[ $SCENARIO == websocket ]]; then
        # CONNECTIONS tunnels, their cookies taken in turn from the
        # sessions', 1 KiB messages echoed (as in bench/run.sh's websocket
        # scenario); a message counts as a request.
        BENCH_COOKIES=$RUN_DIR/cookies "$TARGET_DIR/release/examples/bench_websocket" \
            "$THREADS" "$CONNECTIONS" "$1" "ws://$CLOAKROOM_ADDR$PATH_ON" >"$2" 2>&1 ||
            die "bench_websocket failed; see $2"
        return
    fi
    [[ $SCENARIO == anonymous ]] || cookies=$RUN_DIR/cookies
    BENCH_COOKIES=$cookies "$TARGET_DIR/release/examples/bench_load" \
        "$THREADS" "$CONNECTIONS" "$1" "http://$CLOAKROOM_ADDR$PATH_ON" >"$2" 2>&1 ||
        die "bench_load failed; see $2"
}

# One run of a binary; sets RESULT to "requests/s ns-of-CPU-per-request".
# (Not in a subshell: what it starts must stay in PID, for stop_started.)
run() { # binary label
    local binary=$1 label=$2 before after requests errors
    require_free_port "$CLOAKROOM_ADDR"
    # The running binary's log is cloakroom.log (what wait_for_port shows
    # if it fails to start), kept as cloakroom-LABEL.log once it stops.
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$binary" --config "$RUN_DIR/proxy.compare.toml" \
        >"$RUN_DIR/cloakroom.log" 2>&1 &
    PID[cloakroom]=$!
    wait_for_port cloakroom "$CLOAKROOM_ADDR"
    if [[ $SCENARIO != anonymous ]]; then
        make_logins "http://$CLOAKROOM_ADDR/login" "$SESSIONS" "$RUN_DIR/cookies" "$RUN_DIR/login.txt"
    fi
    load "$WARMUP" "$RUN_DIR/warmup.txt"
    before=$(all_ticks)
    load "$SECONDS_EACH" "$RUN_DIR/load-$label.txt"
    after=$(all_ticks)
    kill -TERM "${PID[cloakroom]}" 2>/dev/null || true
    wait "${PID[cloakroom]}" 2>/dev/null || true
    unset 'PID[cloakroom]'
    mv "$RUN_DIR/cloakroom.log" "$RUN_DIR/cloakroom-$label.log"
    [[ $STORE != redis ]] || "$REDIS_CLI" -p "$REDIS_PORT" FLUSHALL >/dev/null
    requests=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$RUN_DIR/load-$label.txt")
    errors=$(sed -n 's/^BENCH .*socket_errors=\([0-9]*\) status_errors=\([0-9]*\).*/\1 \2/p' "$RUN_DIR/load-$label.txt")
    [[ -n $requests && $requests -gt 0 ]] || die "no requests; see $RUN_DIR/load-$label.txt"
    [[ $errors == "0 0" ]] || die "errors (socket, status): $errors; see $RUN_DIR/load-$label.txt"
    RESULT=$(awk -v r="$requests" -v s="$SECONDS_EACH" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%d %.0f\n", r / s, t * 1e9 / hz / r }')
}

describe_load() {
    case $SCENARIO in
    anonymous) echo ", bench_load $THREADS threads $CONNECTIONS connections" ;;
    websocket) echo ", bench_websocket $THREADS threads $CONNECTIONS tunnels over $SESSIONS sessions, 1 KiB messages (a message echoed counts as a request)" ;;
    *) echo ", cookies rotating over $SESSIONS sessions, bench_load $THREADS threads $CONNECTIONS connections" ;;
    esac
}

main() {
    [[ -n ${OLD:-} && -n ${NEW:-} ]] || die "set OLD and NEW to the two cloakroom binaries"
    [[ -x $OLD ]] || die "OLD ($OLD) is not an executable"
    [[ -x $NEW ]] || die "NEW ($NEW) is not an executable"
    [[ $STORE == memory || $STORE == redis ]] || die "STORE must be memory or redis, not '$STORE'"
    case $SCENARIO in
    anonymous | session-read) PATH_ON=/ ;;
    session-write) PATH_ON=/write ;;
    websocket) PATH_ON=/ws ;;
    *) die "SCENARIO must be anonymous, session-read, session-write or websocket, not '$SCENARIO'" ;;
    esac
    local name
    for name in SESSIONS ROUNDS SECONDS_EACH WARMUP THREADS CONNECTIONS; do
        [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive number, not '${!name}'"
    done
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    trap stop_started EXIT
    trap 'exit 130' INT TERM

    require_tools
    log "building bench_upstream, bench_load and bench_websocket (release)"
    (cd "$REPO_DIR" && cargo build --release --quiet --example bench_upstream --example bench_load \
        --example bench_websocket)
    start_shared

    local round old new rows=''
    : >"$RUN_DIR/ratios"
    for ((round = 1; round <= ROUNDS; round++)); do
        if ((round % 2)); then
            run "$OLD" old && old=$RESULT
            run "$NEW" new && new=$RESULT
        else
            run "$NEW" new && new=$RESULT
            run "$OLD" old && old=$RESULT
        fi
        read -r old_rate old_ns <<<"$old"
        read -r new_rate new_ns <<<"$new"
        local rate cpu
        rate=$(awk -v n="$new_rate" -v o="$old_rate" 'BEGIN { printf "%.3f", n / o }')
        cpu=$(awk -v n="$new_ns" -v o="$old_ns" 'BEGIN { printf "%.3f", n / o }')
        printf '%s %s\n' "$rate" "$cpu" >>"$RUN_DIR/ratios"
        log "round $round: old $old_rate req/s (${old_ns} ns CPU each), new $new_rate (${new_ns} ns): rate $rate, CPU $cpu"
        rows+=$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$round" "$old_rate" "$new_rate" "$rate" \
            "$(awk -v n="$old_ns" 'BEGIN { printf "%.1f", n / 1000 }')" \
            "$(awk -v n="$new_ns" 'BEGIN { printf "%.1f", n / 1000 }')" "$cpu")$'\n'
    done

    local cpu_of='Cloakroom'
    [[ $STORE != redis ]] || cpu_of='Cloakroom + redis-server'
    cat <<EOF
Compare: OLD=$OLD, NEW=$NEW; $SCENARIO, $STORE store$(describe_load), ${SECONDS_EACH}s per run after ${WARMUP}s of warm-up, $ROUNDS rounds alternating; CPU per request: $cpu_of

| round | old req/s | new req/s | rate new ÷ old | old CPU µs/req | new CPU µs/req | CPU new ÷ old |
|---:|---:|---:|---:|---:|---:|---:|
${rows}| median | | | $(awk '{ print $1 }' "$RUN_DIR/ratios" | median_of) | | | $(awk '{ print $2 }' "$RUN_DIR/ratios" | median_of) |
| 95% interval of the median | | | $(awk '{ print $1 }' "$RUN_DIR/ratios" | median_interval) | | | $(awk '{ print $2 }' "$RUN_DIR/ratios" | median_interval) |
EOF
}

main "$@"
