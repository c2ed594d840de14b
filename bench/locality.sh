#!/usr/bin/env bash
# What holding many sessions costs a session read, with nothing else
# changed: one Cloakroom process holds SESSIONS sessions, and the session
# reads alternate between rotating over a hot set (the first HOT of them)
# and rotating over all of them. Same process, same store, same tables,
# same load generator's cost (bench_load pads the hot list to the length of
# the full one): what differs is only how many sessions the requests touch,
# so the ratio is the cost of the memory the sessions spread over (cache
# and TLB misses), without the differences between two processes that
# bench/run.sh's scale twins also measure.
#
#   bench/locality.sh                        # memory store, 1M sessions
#   STORE=redis bench/locality.sh            # Redis store, its cache with room for all
#   SESSIONS=100000 REPS=9 bench/locality.sh
#   bench/pgo.sh && CLOAKROOM_BIN=target/pgo/release/cloakroom bench/locality.sh
#
# Prints a Markdown table on stdout (per repetition, medians and their 95%
# intervals: the rate and Cloakroom's CPU per request, all ÷ hot); progress goes to stderr; the
# logs and the config of the last run stay in bench/results/locality/.
set -euo pipefail

STORE=${STORE:-memory}            # memory or redis
SESSIONS=${SESSIONS:-1000000}     # sessions made, and rotated over in the "all" phases
HOT=${HOT:-1000}                  # the first HOT of them: the "hot" phases
REPS=${REPS:-7}                   # repetitions of the pair of phases
SECONDS_EACH=${SECONDS_EACH:-8}   # seconds per phase
WARMUP=${WARMUP:-20}              # seconds of reads over all sessions first
THREADS=${THREADS:-2}             # bench_load threads
CONNECTIONS=${CONNECTIONS:-64}    # bench_load connections
REDIS_SERVER=${REDIS_SERVER:-redis-server}

# Away from the other bench scripts' fixed ports.
UPSTREAM_ADDR=127.0.0.1:3916
CLOAKROOM_ADDR=127.0.0.1:3917
OPS_ADDR=127.0.0.1:3918

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_DIR/bench
RUN_DIR=$BENCH_DIR/results/locality
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
# The Cloakroom binary measured: CLOAKROOM_BIN (e.g. the profile-guided
# target/pgo/release/cloakroom), else the release build this script makes.
CLOAKROOM=${CLOAKROOM_BIN:-$TARGET_DIR/release/cloakroom}

declare -A PID=() # what this script started: name -> PID

SCRIPT=locality.sh
# shellcheck source=bench/processes.sh
. "$BENCH_DIR/processes.sh"
# shellcheck source=bench/stats.sh
. "$BENCH_DIR/stats.sh"

stop_everything() { stop_started; }

require_tools() {
    local tool
    for tool in wrk curl cargo awk; do
        command -v "$tool" >/dev/null || die "needs $tool (Debian's wrk, curl)"
    done
    [[ $STORE != redis ]] || command -v "$REDIS_SERVER" >/dev/null ||
        die "needs $REDIS_SERVER (Debian's redis-server) for STORE=redis"
}

start_upstream() {
    require_free_port "$UPSTREAM_ADDR"
    "$TARGET_DIR/release/examples/bench_upstream" "$UPSTREAM_ADDR" >"$RUN_DIR/upstream.log" 2>&1 &
    PID[upstream]=$!
    wait_for_port upstream "$UPSTREAM_ADDR"
}

# bench/proxy.bench.toml on this script's addresses, its [store] replaced
# by one with room for every session (none is evicted), and [ops].
start_cloakroom() {
    require_free_port "$CLOAKROOM_ADDR"
    require_free_port "$OPS_ADDR"
    local config=$RUN_DIR/proxy.locality.toml store
    if [[ $STORE == redis ]]; then
        local addr=127.0.0.1:$(free_port)
        "$REDIS_SERVER" --bind 127.0.0.1 --port "${addr#*:}" --save "" --appendonly no \
            --dir "$RUN_DIR" --logfile "" >"$RUN_DIR/redis.log" 2>&1 &
        PID[redis]=$!
        wait_for_port redis "$addr"
        # Room in the cache for every session: a full shard of the cache
        # drops a record, and the shards do not fill evenly.
        store=$(printf 'kind = "redis"\nurl = "redis://%s"\ncache_sessions = %s' "$addr" $((SESSIONS + SESSIONS / 4 + 1024)))
    else
        store=$(printf 'kind = "memory"\nmax_sessions = %s' $((SESSIONS + SESSIONS / 4 + 1024)))
    fi
    bench_config "$CLOAKROOM_ADDR" "http://$UPSTREAM_ADDR" "$store" "$config"
    printf '\n[ops]\nlisten = "%s"\n' "$OPS_ADDR" >>"$config"
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$CLOAKROOM" \
        --config "$config" >"$RUN_DIR/cloakroom.log" 2>&1 &
    PID[cloakroom]=$!
    wait_for_port cloakroom "$CLOAKROOM_ADDR"
}

# SESSIONS logins (GET /login, make_logins), their cookies into
# $RUN_DIR/all, as bench/run.sh makes them; the first HOT into $RUN_DIR/hot.
make_sessions() {
    log "making $SESSIONS sessions with GET /login"
    make_logins "http://$CLOAKROOM_ADDR/login" "$SESSIONS" "$RUN_DIR/all" "$RUN_DIR/login.txt"
    head -n "$HOT" "$RUN_DIR/all" >"$RUN_DIR/hot"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${PID[cloakroom]}/stat"; }

# One phase: reads rotating over the cookies of a file, padded to SESSIONS
# lines; prints "requests ns-of-CPU-per-request".
phase() { # cookie-file seconds
    local before after requests errors
    before=$(cpu_ticks)
    BENCH_COOKIES=$1 BENCH_LINES=$SESSIONS "$TARGET_DIR/release/examples/bench_load" \
        "$THREADS" "$CONNECTIONS" "$2" "http://$CLOAKROOM_ADDR/" >"$RUN_DIR/phase.txt" 2>&1 ||
        die "bench_load failed; see $RUN_DIR/phase.txt"
    after=$(cpu_ticks)
    requests=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$RUN_DIR/phase.txt")
    errors=$(sed -n 's/^BENCH .*socket_errors=\([0-9]*\) status_errors=\([0-9]*\).*/\1 \2/p' "$RUN_DIR/phase.txt")
    [[ -n $requests && $requests -gt 0 ]] || die "no requests; see $RUN_DIR/phase.txt"
    [[ $errors == "0 0" ]] || die "errors (socket, status): $errors; see $RUN_DIR/phase.txt"
    awk -v r="$requests" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%d %.0f\n", r, t * 1e9 / hz / r }'
}

metric() { curl -sS "http://$OPS_ADDR/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }

main() {
    [[ $STORE == memory || $STORE == redis ]] || die "STORE must be memory or redis, not '$STORE'"
    local name
    for name in SESSIONS HOT REPS SECONDS_EACH WARMUP THREADS CONNECTIONS; do
        [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive number, not '${!name}'"
    done
    ((HOT < SESSIONS)) || die "HOT ($HOT) must be fewer than SESSIONS ($SESSIONS)"
    [[ -z ${CLOAKROOM_BIN:-} || -x $CLOAKROOM_BIN ]] ||
        die "CLOAKROOM_BIN ($CLOAKROOM_BIN) is not an executable"
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    trap stop_everything EXIT
    trap 'exit 130' INT TERM

    require_tools
    local what=(--example bench_upstream --example bench_load)
    [[ -n ${CLOAKROOM_BIN:-} ]] || what+=(--bin cloakroom)
    log "building ${what[*]} (release)"
    (cd "$REPO_DIR" && cargo build --release --quiet "${what[@]}")
    start_upstream
    start_cloakroom
    make_sessions
    log "warming up: ${WARMUP}s of reads over all $SESSIONS sessions"
    phase "$RUN_DIR/all" "$WARMUP" >/dev/null
    local hits_before misses_before
    hits_before=$(metric cloakroom_redis_cache_hits_total)
    misses_before=$(metric cloakroom_redis_cache_misses_total)

    local rep rows='' hot all ratio cpu_ratio
    : >"$RUN_DIR/ratios"
    for ((rep = 1; rep <= REPS; rep++)); do
        # Alternate which phase goes first, so that neither always follows
        # the other.
        if ((rep % 2)); then
            hot=$(phase "$RUN_DIR/hot" "$SECONDS_EACH")
            all=$(phase "$RUN_DIR/all" "$SECONDS_EACH")
        else
            all=$(phase "$RUN_DIR/all" "$SECONDS_EACH")
            hot=$(phase "$RUN_DIR/hot" "$SECONDS_EACH")
        fi
        read -r hot_requests hot_ns <<<"$hot"
        read -r all_requests all_ns <<<"$all"
        ratio=$(awk -v a="$all_requests" -v h="$hot_requests" 'BEGIN { printf "%.3f", a / h }')
        cpu_ratio=$(awk -v a="$all_ns" -v h="$hot_ns" 'BEGIN { printf "%.3f", a / h }')
        printf '%s %s\n' "$ratio" "$cpu_ratio" >>"$RUN_DIR/ratios"
        log "rep $rep: hot $hot_requests requests (${hot_ns} ns CPU each), all $all_requests (${all_ns} ns): rate $ratio, CPU $cpu_ratio"
        rows+=$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$rep" \
            "$((hot_requests / SECONDS_EACH))" "$((all_requests / SECONDS_EACH))" "$ratio" \
            "$(awk -v n="$hot_ns" 'BEGIN { printf "%.1f", n / 1000 }')" \
            "$(awk -v n="$all_ns" 'BEGIN { printf "%.1f", n / 1000 }')" "$cpu_ratio")$'\n'
    done

    local commit rss cache=''
    commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo "none yet")
    rss=$(awk '$1 == "VmRSS:" { printf "%.1f", $2 / 1024 }' "/proc/${PID[cloakroom]}/status")
    if [[ $STORE == redis ]]; then
        local hits misses
        hits=$(($(metric cloakroom_redis_cache_hits_total) - hits_before))
        misses=$(($(metric cloakroom_redis_cache_misses_total) - misses_before))
        cache=$(awk -v h="$hits" -v m="$misses" 'BEGIN { printf "; the Redis cache answered %.2f%% of the measured reads (%d hits, %d misses)", 100 * h / (h + m), h, m }')
    fi
    cat <<EOF
Locality, commit $commit (working tree as built; Cloakroom binary: ${CLOAKROOM_BIN:-the release build}): $STORE store holding $SESSIONS sessions (RSS $rss MB), session reads rotating over the first $HOT of them ("hot") or over all ("all"), ${SECONDS_EACH}s each, alternated, bench_load $THREADS threads $CONNECTIONS connections$cache

| rep | hot req/s | all req/s | rate all ÷ hot | hot CPU µs/req | all CPU µs/req | CPU all ÷ hot |
|---:|---:|---:|---:|---:|---:|---:|
${rows}| median | | | $(awk '{ print $1 }' "$RUN_DIR/ratios" | median_of) | | | $(awk '{ print $2 }' "$RUN_DIR/ratios" | median_of) |
| 95% interval of the median | | | $(awk '{ print $1 }' "$RUN_DIR/ratios" | median_interval) | | | $(awk '{ print $2 }' "$RUN_DIR/ratios" | median_interval) |
EOF
}

main "$@"
