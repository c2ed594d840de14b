#!/usr/bin/env bash
# Where Cloakroom's CPU goes, natively: one scenario, one store, sampled
# with `perf` while bench_load drives it. Where bench/instructions.sh counts
# user-space instructions (repeatable, but blind to the kernel, to cache
# misses and to the CPU's SHA extensions), this shows the time itself,
# kernel included, with call chains.
#
#   bench/profile.sh                                # session-write, memory store
#   STORE=redis bench/profile.sh                    # on a redis-server of its own
#   SCENARIO=session-read SESSIONS=100000 bench/profile.sh
#
# Variables: SCENARIO (anonymous, session-read, session-write), STORE
# (memory, redis), SESSIONS (1000: the cookies the session scenarios rotate
# over), SECONDS_EACH (8: each of the two phases), FREQ (999: samples per
# second), TOP (40: functions listed), READ_FIRST (0: seconds of session
# reads over the same cookies before anything is measured, as bench/run.sh's
# session-read scenario precedes its session-write one), CACHE_SESSIONS
# (the Redis store's cache_sessions; empty: its default, 100000), REDIS_SERVER
# and REDIS_CLI (the programs to run).
#
# Cloakroom is built with frame pointers (`-C force-frame-pointers=yes`)
# under target/profile (PROFILE_TARGET_DIR), so that perf can walk its
# stacks; the benchmark's own build is left alone. Three phases: first
# bench_load alone, for the CPU per request (from /proc), then a short one
# under `perf stat`, for the system calls per request, then again under
# `perf record`. The report goes to stdout; perf.data and the logs stay in
# bench/results/profile/ (`perf report -i bench/results/profile/perf.data`).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${SCENARIO:-session-write}
STORE=${STORE:-memory}
CACHE_SESSIONS=${CACHE_SESSIONS:-}
SESSIONS=${SESSIONS:-1000}
SECONDS_EACH=${SECONDS_EACH:-8}
READ_FIRST=${READ_FIRST:-0}
FREQ=${FREQ:-999}
TOP=${TOP:-40}
PROFILE_TARGET_DIR=${PROFILE_TARGET_DIR:-target/profile}
UPSTREAM=127.0.0.1:3900
PROXY=127.0.0.1:3901
OUT=bench/results/profile

die() { echo "profile.sh: $*" >&2; exit 1; }
case $SCENARIO in
anonymous | session-read) path=/ ;;
session-write) path=/write ;;
*) die "SCENARIO must be anonymous, session-read or session-write, not '$SCENARIO'" ;;
esac
[[ $STORE == memory || $STORE == redis ]] || die "STORE must be memory or redis, not '$STORE'"

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need perf linux-perf
need curl curl
[[ $STORE == memory ]] || need redis-server redis-server
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}

port_is_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 200); do port_is_open "$1" && return 0; sleep 0.1; done
    die "nothing listens on $1"
}
for addr in "$UPSTREAM" "$PROXY"; do
    ! port_is_open "$addr" || die "something already listens on $addr; stop it first"
done

rm -rf "$OUT" && mkdir -p "$OUT"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

cargo build --release --quiet --example bench_upstream --example bench_load
RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=$PROFILE_TARGET_DIR \
    cargo build --release --quiet --bin cloakroom
examples=${CARGO_TARGET_DIR:-target}/release/examples

config=bench/proxy.bench.toml
if [[ $STORE == redis ]]; then
    redis_port=$((20000 + RANDOM % 20000))
    ! port_is_open "127.0.0.1:$redis_port" || die "port $redis_port is taken; run again"
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
        --dir "$OUT" >"$OUT/redis.log" 2>&1 &
    pids+=($!)
    redis_pid=$!
    wait_port "127.0.0.1:$redis_port"
    config=$OUT/proxy.toml
    # The benchmark's configuration with its [store] table replaced.
    awk '/^\[/ { in_store = ($0 == "[store]") } !in_store' bench/proxy.bench.toml >"$config"
    printf '[store]\nkind = "redis"\nurl = "redis://127.0.0.1:%s"\n' "$redis_port" >>"$config"
    [[ -z $CACHE_SESSIONS ]] || printf 'cache_sessions = %s\n' "$CACHE_SESSIONS" >>"$config"
fi

"$examples/bench_upstream" "$UPSTREAM" >"$OUT/upstream.log" 2>&1 &
pids+=($!)
wait_port "$UPSTREAM"
RUST_LOG=warn "$PROFILE_TARGET_DIR/release/cloakroom" --config "$config" >"$OUT/cloakroom.log" 2>&1 &
pids+=($!)
proxy_pid=$!
wait_port "$PROXY"

cookies=$OUT/cookies.txt
: >"$cookies"
if [[ $SCENARIO != anonymous ]]; then
    for ((i = 0; i < SESSIONS; i++)); do printf 'url = "http://%s/login"\noutput = "/dev/null"\n' "$PROXY"; done >"$OUT/logins.curl"
    curl -s -K "$OUT/logins.curl" -D - | tr -d '\r' |
        awk 'tolower($1) == "set-cookie:" { split($2, c, ";"); if (c[1] ~ /^sid=/) print c[1] }' >"$cookies"
    made=$(wc -l <"$cookies")
    ((made == SESSIONS)) || die "made $made of $SESSIONS sessions with GET /login; see $OUT/cloakroom.log"
fi

load() { # seconds output [path]
    BENCH_COOKIES=$([[ -s $cookies ]] && echo "$cookies" || true) \
        "$examples/bench_load" 2 64 "$1" "http://$PROXY${3:-$path}" >"$2" 2>&1
}
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # user and system clock ticks
redis() { "$REDIS_CLI" -p "$redis_port" "$@"; }

[[ $READ_FIRST =~ ^[0-9]+$ ]] || die "READ_FIRST must be a number of seconds, not '$READ_FIRST'"
((READ_FIRST == 0)) || load "$READ_FIRST" "$OUT/read-first.txt" /
load 2 "$OUT/warmup.txt"
read -r user0 sys0 < <(ticks "$proxy_pid")
[[ $STORE == memory ]] || { read -r ruser0 rsys0 < <(ticks "$redis_pid"); redis CONFIG RESETSTAT >/dev/null; }
load "$SECONDS_EACH" "$OUT/load.txt"
read -r user1 sys1 < <(ticks "$proxy_pid")
requests=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$OUT/load.txt")
errors=$(sed -n 's/^BENCH .*socket_errors=\([0-9]*\) status_errors=\([0-9]*\).*/\1 + \2/p' "$OUT/load.txt")
[[ -n $requests && $requests -gt 0 ]] || die "bench_load made no requests; see $OUT/load.txt"
hz=$(getconf CLK_TCK)
per_request() { awk -v t="$1" -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }

echo "## $SCENARIO, $STORE store ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo
echo "- load: bench_load, 2 threads, 64 connections, ${SECONDS_EACH}s, $([[ -s $cookies ]] && echo "cookies rotating over $SESSIONS sessions" || echo "no cookie")"
echo "- $((requests / SECONDS_EACH)) requests/s, $((errors)) errors"
echo "- Cloakroom CPU per request: user $(per_request $((user1 - user0))) µs, system $(per_request $((sys1 - sys0))) µs"
if [[ $STORE == redis ]]; then
    read -r ruser1 rsys1 < <(ticks "$redis_pid")
    echo "- redis-server CPU per request: user $(per_request $((ruser1 - ruser0))) µs, system $(per_request $((rsys1 - rsys0))) µs"
    echo "- Redis commands per request (a script's own calls counted apart): $(redis INFO commandstats | tr -d '\r' |
        awk -F'[_:,=]' -v n="$requests" '/^cmdstat_/ && $2 !~ /^(config|info|ping)/ {
            printf "%s%s %.2f (%.1f µs each)", sep, toupper($2), $4 / n, $10; sep = ", " }')"
fi

# System calls and context switches per request: a short third load, with
# `perf stat` counting them in Cloakroom (and redis-server) from just before
# it starts to just after it ends. Counting costs each system call a little,
# which is why run 1 above is measured without it.
SYSCALL_EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,context-switches
count_start() { # pid output: counts for 4 s, across the 3 s load below
    perf stat -x, -e "$SYSCALL_EVENTS" -p "$1" -o "$2" -- sleep 4 >/dev/null 2>>"$OUT/perf-stat.log" &
    counters+=($!)
}
count_line() { # csv requests
    awk -F, -v n="$2" '$3 ~ /^(raw_syscalls|syscalls|context)/ && $1 ~ /^[0-9]+$/ {
            name = $3; sub(/^syscalls:sys_enter_/, "", name)
            if (name == "raw_syscalls:sys_enter") total = $1 / n
            else if (name == "context-switches") switches = $1 / n
            else if ($1 / n >= 0.005) { calls = calls sep sprintf("%s %.2f", name, $1 / n); sep = ", " }
        }
        END { if (total == "") exit 1; printf "%.2f (%s); context switches %.2f", total, calls, switches }' "$1"
}
counters=()
count_start "$proxy_pid" "$OUT/syscalls.csv"
[[ $STORE == memory ]] || count_start "$redis_pid" "$OUT/redis-syscalls.csv"
sleep 0.5 # perf attaches
load 3 "$OUT/load-counted.txt"
wait "${counters[@]}" 2>/dev/null || true
counted=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$OUT/load-counted.txt")
if [[ -n $counted && $counted -gt 0 ]] && line=$(count_line "$OUT/syscalls.csv" "$counted"); then
    echo "- Cloakroom's system calls per request (a third run, counted by perf stat): $line"
    if [[ $STORE == redis ]] && line=$(count_line "$OUT/redis-syscalls.csv" "$counted"); then
        echo "- redis-server's system calls per request: $line"
    fi
else
    echo "- system calls per request: not counted (perf stat could not use the syscall tracepoints; see $OUT/perf-stat.log)"
fi

# The profile: bench_load again, perf sampling Cloakroom meanwhile.
perf record -q -F "$FREQ" --call-graph fp -p "$proxy_pid" -o "$OUT/perf.data" -- sleep "$SECONDS_EACH" 2>"$OUT/perf.log" &
perf_pid=$!
load $((SECONDS_EACH + 1)) "$OUT/load-profiled.txt"
wait "$perf_pid" || die "perf record failed; see $OUT/perf.log"

echo
echo "Share of Cloakroom's samples, by part (self time):"
echo
perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null |
    awk '/^ *[0-9.]+%/ {
        share = $1 + 0; symbol = $0
        if ($2 == "[k]") part = "kernel"
        else if (symbol ~ /mi_|mimalloc/) part = "allocator (mimalloc)"
        else if (symbol ~ /redis::|combine::/ && symbol !~ /cloakroom::/) part = "Redis client (redis-rs)"
        else if (symbol ~ /tokio::|mio::/ && symbol !~ /cloakroom::/) part = "tokio"
        else if (symbol ~ /\[\.\] (__|_int_|epoll|memcpy|memmove|memset|memcmp)/) part = "libc"
        else part = "Cloakroom and other crates"
        total[part] += share
    }
    END { for (part in total) printf "| %s | %.1f%% |\n", part, total[part] }' | sort -t'|' -k3 -rn
echo
echo "Top $TOP user-space functions, by share of samples with them on the stack (the threads' own entry frames left out):"
echo
perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
    awk '/^ *[0-9.]+%/ && $3 == "[.]" && $0 !~ /thread_start|start_thread|__rust_begin_short_backtrace|call_once\{\{vtable.shim\}\}/ {
        $2 = ""; $3 = ""; print }' | head -n "$TOP"
