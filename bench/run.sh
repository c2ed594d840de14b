#!/usr/bin/env bash
# Benchmark: the bench upstream hit directly, behind nginx, behind Cloakroom
# with its memory store and behind Cloakroom with a Redis store, for three
# plain-HTTP scenarios measured with wrk; and, on request, nginx and
# Cloakroom terminating TLS for two TLS scenarios (full handshakes with wrk,
# HTTP/2 session reads with h2load), and WebSocket messages echoed through
# an open tunnel (bench_websocket); all in one run.
# See bench/README.md for what each column means.
#
#   bench/run.sh                       # defaults: 3 runs of 10 s per cell
#   DURATION=3 REPS=1 bench/run.sh     # a quick look
#   SCENARIOS=all bench/run.sh         # the TLS and WebSocket scenarios as well
#   SCENARIOS=websocket TARGETS="nginx cloakroom" bench/run.sh
#                                      # messages through WebSocket tunnels
#   SCENARIOS="tls-handshake h2-session-read" DURATION=5 REPS=1 bench/run.sh
#   SESSIONS=1000000 bench/run.sh      # a scale run: cookies rotate over 1M sessions
#   TARGETS="nginx cloakroom cloakroom-scale cloakroom-redis cloakroom-redis-scale" \
#     SCENARIOS=session-read bench/run.sh   # 1k and 1M sessions side by side
#   TARGETS="nginx cloakroom cloakroom-mid cloakroom-scale" \
#     SCENARIOS=session-read bench/run.sh   # 1k, 100k and 1M sessions side by side
#   REDIS_CPUS=1 TARGETS="nginx cloakroom-redis" bench/run.sh
#                                      # Redis on a CPU of its own
#   TARGETS="nginx cloakroom-redis cloakroom-redis-unix" bench/run.sh
#                                      # Redis over TCP and over its Unix socket
#   bench/pgo.sh && CLOAKROOM_BIN=target/pgo/release/cloakroom bench/run.sh
#                                      # Cloakroom's profile-guided build
#
# Prints a Markdown report on stdout and writes it to bench/results/latest.md;
# progress goes to stderr; logs and raw numbers of the last run stay in
# bench/results/last-run/.
set -euo pipefail

DURATION=${DURATION:-10}        # seconds per measured run
REPS=${REPS:-3}                 # measured runs per cell; the median is shown
WARMUP=${WARMUP:-2}             # seconds of unmeasured load per cell first
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
STREAMS=${STREAMS:-10}          # h2load concurrent streams per connection (-m)
MESSAGE_BYTES=${MESSAGE_BYTES:-1024}  # the websocket scenario's message size
# The session scenarios' cookies rotate over this many sessions per
# Cloakroom target, made through it with GET /login before measuring (1: one
# hot cookie on every request, as this benchmark did before).
SESSIONS=${SESSIONS:-1000}
read -r -a TARGETS <<<"${TARGETS:-direct nginx cloakroom cloakroom-redis}"
PLAIN_SCENARIOS=(anonymous session-read session-write)
# Run against nginx-tls and cloakroom-tls (the TLS twins of the nginx and
# cloakroom targets), only when SCENARIOS names them: they would take the
# default run past 8 minutes.
TLS_SCENARIOS=(tls-handshake h2-session-read)
# Messages echoed through open WebSocket tunnels, against the plain targets,
# only when SCENARIOS names it (or is all).
WEBSOCKET_SCENARIOS=(websocket)
SCENARIOS_DEFAULT="${PLAIN_SCENARIOS[*]}"
[[ ${SCENARIOS:-} != all ]] || SCENARIOS="${PLAIN_SCENARIOS[*]} ${TLS_SCENARIOS[*]} ${WEBSOCKET_SCENARIOS[*]}"
read -r -a SCENARIOS <<<"${SCENARIOS:-$SCENARIOS_DEFAULT}"

# Fixed, because bench/proxy.bench.toml names them too.
UPSTREAM_ADDR=127.0.0.1:3900
CLOAKROOM_ADDR=127.0.0.1:3901
NGINX_ADDR=127.0.0.1:3902
# Cloakroom with the Redis store; its config is made from proxy.bench.toml.
CLOAKROOM_REDIS_ADDR=127.0.0.1:3903
# The TLS targets; bench/proxy.bench.tls.toml names the first one too.
CLOAKROOM_TLS_ADDR=127.0.0.1:3904
NGINX_TLS_ADDR=127.0.0.1:3905
# Cloakroom as cloakroom, plus the operations listener (metrics kept) and
# the JSON access log written out (to ACCESS_LOG): the cost of observing.
CLOAKROOM_OBSERVED_ADDR=127.0.0.1:3906
CLOAKROOM_OBSERVED_OPS=127.0.0.1:3907
ACCESS_LOG=${ACCESS_LOG:-/dev/null}
# Cloakroom as cloakroom, with session.idle_timeout on (touches throttled
# by the default touch_interval): the cost of idle timeouts.
CLOAKROOM_IDLE_ADDR=127.0.0.1:3908
# The scale twins: cloakroom and cloakroom-redis again (the latter with a
# redis-server of its own), with SCALE_SESSIONS sessions made through each
# instead of SESSIONS, so that one run measures both sizes side by side.
SCALE_SESSIONS=${SCALE_SESSIONS:-1000000}
# The mid-size twins (cloakroom-mid, cloakroom-redis-mid), the same with
# MID_SESSIONS sessions: with both kinds of twin, one run measures three
# sizes.
MID_SESSIONS=${MID_SESSIONS:-100000}
# store.cache_sessions of the Redis targets (empty: the default, 100000);
# e.g. CACHE_SESSIONS=1000000 for a Redis cache that holds the scale run's
# sessions, CACHE_SESSIONS=0 for none.
CACHE_SESSIONS=${CACHE_SESSIONS:-}
# REDIS_CPUS (optional): CPUs, in taskset's list form (e.g. 1, or 2-3), that
# the redis-servers have to themselves; everything else this script starts
# (the targets, the upstream, the load) runs on the other CPUs. Production
# gives Redis a host of its own, where Redis's CPU does not slow the proxy
# down; on one machine this is the nearest thing. Unset: all share all CPUs.
REDIS_CPUS=${REDIS_CPUS:-}
OTHER_CPUS=                 # the CPUs REDIS_CPUS leaves, set by pin_cpus
# What sends the plain-HTTP scenarios' requests: wrk (with measure.lua), or
# bench_load (examples/bench_load.rs), whose cost per request does not
# depend on the length of the cookie list: every session list is repeated to
# the longest one's length, so the 1k and the 1M targets of a scale run can
# be compared by their rates, not only by their CPU per request.
LOAD=${LOAD:-wrk}
CLOAKROOM_SCALE_ADDR=127.0.0.1:3909
CLOAKROOM_REDIS_SCALE_ADDR=127.0.0.1:3913
CLOAKROOM_MID_ADDR=127.0.0.1:3914
CLOAKROOM_REDIS_MID_ADDR=127.0.0.1:3915
# cloakroom-redis again, with a redis-server of its own that it reaches
# through the server's Unix socket (store.url = "unix://..."), not TCP.
CLOAKROOM_REDIS_UNIX_ADDR=127.0.0.1:3919
declare -A REDIS_AT=()      # redis-server name (redis, redis-mid, redis-scale, redis-unix) -> its address, a free port found at start
declare -A REDIS_SOCKET=()  # redis-server name -> the Unix socket its Cloakroom uses (redis-unix only)
declare -A REDIS_RSS_BEFORE=() # redis-server name -> its RSS (kB) before and after the sessions were made
declare -A REDIS_RSS_REST=()

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_DIR/bench
RESULTS_DIR=$BENCH_DIR/results
RUN_DIR=$RESULTS_DIR/last-run
RAW=$RUN_DIR/raw.tsv
# Binaries are where cargo puts them (CARGO_TARGET_DIR, if set).
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
# The Cloakroom binary every Cloakroom target runs: CLOAKROOM_BIN (e.g.
# target/pgo/release/cloakroom, which bench/pgo.sh builds), else the
# release build this script makes.
CLOAKROOM=${CLOAKROOM_BIN:-$TARGET_DIR/release/cloakroom}
CLK_TCK=$(getconf CLK_TCK)
# Generated per run (never committed): the certificate both TLS proxies
# serve, and the shim that keeps wrk from resuming TLS sessions.
TLS_DIR=$RUN_DIR/tls
TLS_CERT=$TLS_DIR/cert.pem
TLS_KEY=$TLS_DIR/key.pem
NO_RESUME_SO=$RUN_DIR/no_resume.so
BASE_CONFIG=$RUN_DIR/proxy.bench.toml

declare -A PID=()           # what this script started: name -> PID
NGINX_WORKERS=()            # nginx's workers, to clean up if the master won't
declare -A SESSION_COOKIE=() # Cloakroom target -> the cookie of its bench session
declare -A SESSION_FILE=()  # Cloakroom target -> the file of its sessions' cookies
declare -A RSS_BEFORE=()    # Cloakroom target -> its RSS (kB) before the sessions were made
declare -A RSS_REST=()      # Cloakroom target -> its RSS (kB) with them, before the load
SESSION_CHECK="not run (Cloakroom is not among the targets)"
CLOAKROOM_TARGETS=(cloakroom cloakroom-redis cloakroom-tls cloakroom-observed cloakroom-idle cloakroom-mid cloakroom-redis-mid cloakroom-scale cloakroom-redis-scale cloakroom-redis-unix)
TLS_TARGETS=()              # nginx-tls and/or cloakroom-tls, set in main
TLS_CHECK="not run (no TLS scenario)"

SCRIPT=run.sh
# shellcheck source=bench/processes.sh
. "$BENCH_DIR/processes.sh"
# shellcheck source=bench/stats.sh
. "$BENCH_DIR/stats.sh"

# --- tools ---------------------------------------------------------------

nginx_bin() {
    command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

# REDIS_SERVER: another server program for the Redis targets, e.g. a
# Valkey 8.1 (REDIS_SERVER=target/valkey/valkey-server after .ci/valkey),
# whose native compare-and-set Cloakroom then uses.
redis_bin() {
    if [[ -n ${REDIS_SERVER:-} ]]; then
        [[ -x $REDIS_SERVER ]] || die "REDIS_SERVER=$REDIS_SERVER is not an executable"
        echo "$REDIS_SERVER"
        return
    fi
    command -v redis-server || { [[ -x /usr/bin/redis-server ]] && echo /usr/bin/redis-server; }
}

install_missing_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    nginx_bin >/dev/null || missing+=(nginx)
    if wants_redis && ! redis_bin >/dev/null; then missing+=(redis-server); fi
    if wants_tls; then
        command -v h2load >/dev/null || missing+=(nghttp2-client)
        command -v openssl >/dev/null || missing+=(openssl)
        command -v cc >/dev/null || missing+=(gcc libc6-dev)
    fi
    ((${#missing[@]} == 0)) && return 0

    log "installing ${missing[*]} with apt-get"
    local sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    # Debian's nginx and redis-server packages start the system service on
    # install unless a policy says no; this benchmark runs its own servers
    # and wants no other.
    local policy=/usr/sbin/policy-rc.d made_policy=0 status=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        made_policy=1
    fi
    local apt_log=$RUN_DIR/apt.log
    "${sudo[@]}" apt-get update -qq >"$apt_log" 2>&1 || status=$?
    ((status != 0)) || "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$apt_log" 2>&1 || status=$?
    ((made_policy == 0)) || "${sudo[@]}" rm -f "$policy"
    ((status == 0)) || die "apt-get failed to install ${missing[*]}; see $apt_log"
}

build_binaries() {
    local what=(--example bench_upstream)
    [[ $LOAD != bench_load ]] || what+=(--example bench_load)
    ! wants_scenario websocket || what+=(--example bench_websocket)
    local target
    for target in "${CLOAKROOM_TARGETS[@]}"; do
        if wants_target "$target" && [[ -z ${CLOAKROOM_BIN:-} ]]; then
            what+=(--bin cloakroom)
            break
        fi
    done
    [[ -z ${CLOAKROOM_BIN:-} || -x $CLOAKROOM_BIN ]] || die "CLOAKROOM_BIN ($CLOAKROOM_BIN) is not an executable"
    log "building ${what[*]} (release)"
    (cd "$REPO_DIR" && cargo build --release --quiet "${what[@]}")
}

wants_target() {
    local target
    for target in "${TARGETS[@]}" "${TLS_TARGETS[@]}"; do [[ $target == "$1" ]] && return 0; done
    return 1
}

# Every name in TARGETS is one this script starts (the TLS twins come with
# the TLS scenarios, not by name).
check_target_names() {
    local target known
    for target in "${TARGETS[@]}"; do
        for known in direct nginx "${CLOAKROOM_TARGETS[@]}"; do
            [[ $known == "$target" && $known != *-tls ]] && continue 2
        done
        die "unknown target '$target'; known: direct nginx $(printf '%s\n' "${CLOAKROOM_TARGETS[@]}" | grep -v -- '-tls$' | paste -sd ' ')"
    done
}

# The Redis server of the run, for the report (nothing without a Redis
# target). Session writes use its own compare-and-set when it has one
# (Valkey 8.1, Redis 8.4), else the script.
redis_line() {
    wants_redis || return 0
    printf '\n- Redis server: %s' "$("$(redis_bin)" --version | cut -d' ' -f1-3)"
    if [[ -n $REDIS_CPUS ]]; then
        printf '; the redis-servers alone on CPU(s) %s, everything else on CPU(s) %s' "$REDIS_CPUS" "$OTHER_CPUS"
    else
        printf '; it shares the CPUs with everything else'
    fi
}

# With REDIS_CPUS: this script, and so everything it starts, onto the CPUs
# REDIS_CPUS leaves (start_redis puts the redis-servers on REDIS_CPUS).
pin_cpus() {
    [[ -n $REDIS_CPUS ]] || return 0
    [[ $REDIS_CPUS =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] ||
        die "REDIS_CPUS must be a CPU list such as 1 or 2-3, not '$REDIS_CPUS'"
    command -v taskset >/dev/null 2>&1 || die "REDIS_CPUS needs taskset (Debian's util-linux)"
    local -A for_redis=()
    local parts part first last cpu cpus
    cpus=$(nproc --all)
    IFS=, read -r -a parts <<<"$REDIS_CPUS"
    for part in "${parts[@]}"; do
        first=${part%-*} last=${part#*-}
        ((first <= last && last < cpus)) || die "REDIS_CPUS=$REDIS_CPUS: this machine has CPUs 0 to $((cpus - 1))"
        for ((cpu = first; cpu <= last; cpu++)); do for_redis[$cpu]=1; done
    done
    local others=()
    for ((cpu = 0; cpu < cpus; cpu++)); do
        [[ -n ${for_redis[$cpu]:-} ]] || others+=("$cpu")
    done
    ((${#others[@]} > 0)) || die "REDIS_CPUS=$REDIS_CPUS leaves no CPU for the rest"
    OTHER_CPUS=$(IFS=,; echo "${others[*]}")
    taskset -pc "$OTHER_CPUS" $$ >/dev/null || die "could not move this script to CPU(s) $OTHER_CPUS"
}

# Whether a target of this run stores its sessions in Redis.
wants_redis() {
    local target
    for target in "${TARGETS[@]}"; do [[ $target == cloakroom-redis* ]] && return 0; done
    return 1
}

is_tls_scenario() {
    local scenario
    for scenario in "${TLS_SCENARIOS[@]}"; do [[ $scenario == "$1" ]] && return 0; done
    return 1
}

wants_tls() {
    local scenario
    for scenario in "${SCENARIOS[@]}"; do is_tls_scenario "$scenario" && return 0; done
    return 1
}

wants_scenario() {
    local scenario
    for scenario in "${SCENARIOS[@]}"; do [[ $scenario == "$1" ]] && return 0; done
    return 1
}

wants_plain() {
    local scenario
    for scenario in "${SCENARIOS[@]}"; do is_tls_scenario "$scenario" || return 0; done
    return 1
}

check_scenarios() {
    local scenario
    for scenario in "${SCENARIOS[@]}"; do
        [[ " ${PLAIN_SCENARIOS[*]} ${TLS_SCENARIOS[*]} ${WEBSOCKET_SCENARIOS[*]} " == *" $scenario "* ]] ||
            die "unknown scenario '$scenario'; known: ${PLAIN_SCENARIOS[*]} ${TLS_SCENARIOS[*]} ${WEBSOCKET_SCENARIOS[*]} (or all)"
    done
}

scenario_targets() { # scenario -> the targets it runs against
    if is_tls_scenario "$1"; then echo "${TLS_TARGETS[*]}"; else echo "${TARGETS[*]}"; fi
}

# The certificate of this run (the command is the one bench/README.md gives)
# and the no-resumption shim for wrk.
make_tls_files() {
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$TLS_KEY" -out "$TLS_CERT" >"$TLS_DIR/openssl.log" 2>&1 ||
        die "openssl could not make the certificate; see $TLS_DIR/openssl.log"
    cc -O2 -shared -fPIC -o "$NO_RESUME_SO" "$BENCH_DIR/no_resume.c" -ldl ||
        die "could not compile bench/no_resume.c"
}

# --- processes -----------------------------------------------------------

start_upstream() {
    require_free_port "$UPSTREAM_ADDR"
    "$TARGET_DIR/release/examples/bench_upstream" "$UPSTREAM_ADDR" \
        >"$RUN_DIR/upstream.log" 2>&1 &
    PID[upstream]=$!
    wait_for_port upstream "$UPSTREAM_ADDR"
}

start_nginx() { # [name address template]: nginx, or nginx-tls
    local name=${1:-nginx} addr=${2:-$NGINX_ADDR} template=${3:-$BENCH_DIR/nginx.conf}
    require_free_port "$addr"
    local prefix=$RUN_DIR/$name workers=()
    mkdir -p "$prefix/tmp"
    # One worker per CPU this script may use (nginx's `auto` counts them
    # all, even those REDIS_CPUS takes away), as Cloakroom starts one per
    # CPU it may use.
    sed -e "s|@LISTEN@|$addr|" -e "s|@UPSTREAM@|$UPSTREAM_ADDR|" \
        -e "s|@CERT@|$TLS_CERT|" -e "s|@KEY@|$TLS_KEY|" \
        -e "s|^worker_processes auto;|worker_processes $(nproc);|" \
        "$template" >"$prefix/nginx.conf"
    "$(nginx_bin)" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        >"$RUN_DIR/$name.log" 2>&1 &
    PID[$name]=$!
    wait_for_port "$name" "$addr"
    read -r -a workers <<<"$(child_pids "${PID[$name]}")"
    NGINX_WORKERS+=("${workers[@]}")
}

start_nginx_tls() {
    start_nginx nginx-tls "$NGINX_TLS_ADDR" "$BENCH_DIR/nginx.tls.conf"
}

# Cloakroom with bench/proxy.bench.tls.toml, its certificate paths filled in.
start_cloakroom_tls() {
    require_free_port "$CLOAKROOM_TLS_ADDR"
    local config=$RUN_DIR/proxy.tls.toml
    sed -e "s|@CERT@|$TLS_CERT|" -e "s|@KEY@|$TLS_KEY|" \
        "$BENCH_DIR/proxy.bench.tls.toml" >"$config"
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$CLOAKROOM" \
        --config "$config" >"$RUN_DIR/cloakroom-tls.log" 2>&1 &
    PID[cloakroom-tls]=$!
    wait_for_port cloakroom-tls "$CLOAKROOM_TLS_ADDR"
}

# bench/proxy.bench.toml with room for SESSIONS sessions (and a margin) in
# the memory store: the config every plain-HTTP Cloakroom target starts from.
make_base_config() {
    room_for "$SESSIONS" "$BENCH_DIR/proxy.bench.toml" >"$BASE_CONFIG"
}

# A config ($2) with max_sessions set to hold $1 sessions and a margin.
room_for() { # sessions config
    local room=$(($1 + $1 / 10 + 1000))
    ((room > 100000)) || room=100000
    grep -q "^max_sessions = " "$2" || die "no max_sessions in $2"
    sed -e "s|^max_sessions = .*|max_sessions = $room|" "$2"
}

# How many sessions are made through a target: SCALE_SESSIONS for the scale
# twins, MID_SESSIONS for the mid-size ones, one for the TLS targets (h2load
# sends one cookie), else SESSIONS.
sessions_of() { # target
    case $1 in
    *-scale) echo "$SCALE_SESSIONS" ;;
    *-mid) echo "$MID_SESSIONS" ;;
    *-tls) echo 1 ;;
    *) echo "$SESSIONS" ;;
    esac
}

# A memory-store twin of cloakroom (cloakroom-scale, cloakroom-mid) on its
# own address, with room for the sessions made through it.
start_cloakroom_sized() { # target
    local target=$1 addr
    addr=$(target_addr "$target")
    require_free_port "$addr"
    local config=$RUN_DIR/proxy.$target.toml
    room_for "$(sessions_of "$target")" "$BASE_CONFIG" |
        sed -e "s|^listen = .*|listen = \"$addr\"|" >"$config"
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$CLOAKROOM" \
        --config "$config" >"$RUN_DIR/$target.log" 2>&1 &
    PID[$target]=$!
    wait_for_port "$target" "$addr"
}

start_cloakroom() {
    require_free_port "$CLOAKROOM_ADDR"
    # Only the secret in the bench config, whatever this shell exports.
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$CLOAKROOM" \
        --config "$BASE_CONFIG" >"$RUN_DIR/cloakroom.log" 2>&1 &
    PID[cloakroom]=$!
    wait_for_port cloakroom "$CLOAKROOM_ADDR"
}

# Cloakroom with the bench config on CLOAKROOM_OBSERVED_ADDR, with [ops]
# (so metrics are kept) and the access log as JSON lines to ACCESS_LOG
# (/dev/null by default: the formatting and the writes are paid, the disk is
# not filled). Its other log lines go there too.
start_cloakroom_observed() {
    require_free_port "$CLOAKROOM_OBSERVED_ADDR"
    require_free_port "$CLOAKROOM_OBSERVED_OPS"
    local config=$RUN_DIR/proxy.observed.toml
    sed -e "s|^listen = .*|listen = \"$CLOAKROOM_OBSERVED_ADDR\"|" \
        "$BASE_CONFIG" >"$config"
    printf '[ops]\nlisten = "%s"\n[log]\nformat = "json"\naccess = true\n' \
        "$CLOAKROOM_OBSERVED_OPS" >>"$config"
    env -u CLOAKROOM_SECRETS RUST_LOG=warn,cloakroom::access=info "$CLOAKROOM" \
        --config "$config" >>"$ACCESS_LOG" 2>&1 &
    PID[cloakroom-observed]=$!
    wait_for_port cloakroom-observed "$CLOAKROOM_OBSERVED_ADDR"
}

# Cloakroom with the bench config on CLOAKROOM_IDLE_ADDR and a 30-minute
# idle timeout.
start_cloakroom_idle() {
    require_free_port "$CLOAKROOM_IDLE_ADDR"
    local config=$RUN_DIR/proxy.idle.toml
    sed -e "s|^listen = .*|listen = \"$CLOAKROOM_IDLE_ADDR\"|" \
        -e "s|^ttl = .*|&\nidle_timeout = \"30m\"|" \
        "$BASE_CONFIG" >"$config"
    grep -q '^idle_timeout' "$config" || die "could not set idle_timeout in $config"
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$CLOAKROOM" \
        --config "$config" >"$RUN_DIR/cloakroom-idle.log" 2>&1 &
    PID[cloakroom-idle]=$!
    wait_for_port cloakroom-idle "$CLOAKROOM_IDLE_ADDR"
}

# A redis-server of our own: no persistence, files in the run directory.
# redis-unix listens on a Unix socket as well, which its Cloakroom uses.
start_redis() { # name (redis, redis-mid, redis-scale, redis-unix)
    local name=$1 addr
    addr=127.0.0.1:$(free_port)
    REDIS_AT[$name]=$addr
    mkdir -p "$RUN_DIR/$name"
    local pin=() socket=()
    [[ -z $REDIS_CPUS ]] || pin=(taskset -c "$REDIS_CPUS")
    if [[ $name == redis-unix ]]; then
        REDIS_SOCKET[$name]=$RUN_DIR/$name/redis.sock
        socket=(--unixsocket "${REDIS_SOCKET[$name]}" --unixsocketperm 700)
    fi
    "${pin[@]}" "$(redis_bin)" --bind 127.0.0.1 --port "${addr#*:}" --save "" --appendonly no \
        "${socket[@]}" --dir "$RUN_DIR/$name" --logfile "" >"$RUN_DIR/$name.log" 2>&1 &
    PID[$name]=$!
    wait_for_port "$name" "$addr"
}

# Cloakroom with the bench config, but listening on its own address and
# with the [store] table replaced by one for its redis-server.
start_cloakroom_redis() { # target redis-name
    local target=$1 addr
    addr=$(target_addr "$target")
    require_free_port "$addr"
    local config=$RUN_DIR/proxy.$target.toml
    awk -v listen="$addr" '
        /^\[/ { in_store = ($0 == "[store]") }
        in_store { next }
        /^listen = / { print "listen = \"" listen "\""; next }
        { print }' "$BASE_CONFIG" >"$config"
    local url=redis://${REDIS_AT[$2]}
    [[ -z ${REDIS_SOCKET[$2]:-} ]] || url=unix://${REDIS_SOCKET[$2]}
    printf '[store]\nkind = "redis"\nurl = "%s"\n' "$url" >>"$config"
    [[ -z $CACHE_SESSIONS ]] || printf 'cache_sessions = %s\n' "$CACHE_SESSIONS" >>"$config"
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$CLOAKROOM" \
        --config "$config" >"$RUN_DIR/$target.log" 2>&1 &
    PID[$target]=$!
    wait_for_port "$target" "$addr"
}

# A crash under load must stop the benchmark, not turn into odd numbers.
require_all_running() {
    local name
    for name in "${!PID[@]}"; do
        kill -0 "${PID[$name]}" 2>/dev/null && continue
        log "$name exited during the benchmark; the end of its log:"
        tail -n 20 "$RUN_DIR/$name.log" >&2 || true
        die "$name exited during the benchmark"
    done
}

stop_everything() {
    stop_started
    local pid
    for pid in "${NGINX_WORKERS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

child_pids() { # parent PID -> its children's PIDs, from /proc/*/stat
    awk -v parent="$1" '{
        sub(/^.*\) /, "")               # drop "pid (comm) "; $2 is now the ppid
        if ($2 == parent) { split(FILENAME, path, "/"); print path[3] }
    }' /proc/[0-9]*/stat 2>/dev/null | tr '\n' ' '
}

# --- measuring -----------------------------------------------------------

# The processes whose CPU a target's row reports: the proxy itself, or the
# upstream when it is hit directly. nginx is its master plus every worker;
# Cloakroom with Redis is Cloakroom plus the redis-server (the memory store
# works inside Cloakroom's own CPU time, the Redis store does not).
measured_pids() {
    case $1 in
    direct) echo "${PID[upstream]}" ;;
    nginx | nginx-tls) echo "${PID[$1]} $(child_pids "${PID[$1]}")" ;;
    cloakroom | cloakroom-tls | cloakroom-observed | cloakroom-idle | cloakroom-mid | cloakroom-scale) echo "${PID[$1]}" ;;
    cloakroom-redis*) echo "${PID[$1]} ${PID[redis${1#cloakroom-redis}]}" ;;
    esac
}

stat_ticks() { # awk expression over /proc/PID/stat fields, PIDs -> its sum over them
    local expression=$1 pid total=0
    shift
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || die "process $pid exited during the benchmark"
        total=$((total + $(awk "{ sub(/^.*\\) /, \"\"); print $expression }" "/proc/$pid/stat")))
    done
    echo "$total"
}

cpu_ticks() { # PIDs -> utime + stime summed over all of them, in clock ticks
    stat_ticks '$12 + $13' "$@"
}

user_ticks() { # PIDs -> utime alone (the processes' own code), in clock ticks
    stat_ticks '$12' "$@"
}

# Busy CPU ticks of the whole machine minus those of this script, its
# children (wrk, curl, awk) and the servers it started: what other processes
# used. Near 0 means the numbers were taken on a quiet machine.
foreign_ticks() {
    local machine own servers=("${PID[@]}") workers=()
    local name
    local name more=()
    for name in nginx nginx-tls; do
        [[ -n ${PID[$name]:-} ]] || continue
        read -r -a more <<<"$(child_pids "${PID[$name]}")"
        workers+=("${more[@]}")
    done
    # user + nice + system + irq + softirq: a process's stime includes the
    # interrupt time spent while it ran, which /proc/stat counts apart.
    machine=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat)
    own=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$$/stat")
    echo $((machine - own - $(cpu_ticks "${servers[@]}" "${workers[@]}")))
}

target_addr() { # target -> host:port
    case $1 in
    direct) echo "$UPSTREAM_ADDR" ;;
    nginx) echo "$NGINX_ADDR" ;;
    cloakroom) echo "$CLOAKROOM_ADDR" ;;
    cloakroom-redis) echo "$CLOAKROOM_REDIS_ADDR" ;;
    nginx-tls) echo "$NGINX_TLS_ADDR" ;;
    cloakroom-tls) echo "$CLOAKROOM_TLS_ADDR" ;;
    cloakroom-observed) echo "$CLOAKROOM_OBSERVED_ADDR" ;;
    cloakroom-idle) echo "$CLOAKROOM_IDLE_ADDR" ;;
    cloakroom-scale) echo "$CLOAKROOM_SCALE_ADDR" ;;
    cloakroom-redis-scale) echo "$CLOAKROOM_REDIS_SCALE_ADDR" ;;
    cloakroom-mid) echo "$CLOAKROOM_MID_ADDR" ;;
    cloakroom-redis-mid) echo "$CLOAKROOM_REDIS_MID_ADDR" ;;
    cloakroom-redis-unix) echo "$CLOAKROOM_REDIS_UNIX_ADDR" ;;
    esac
}

target_url() { # target scenario
    local scheme=http path=/
    [[ $1 == *-tls ]] && scheme=https
    [[ $2 == session-write ]] && path=/write
    [[ $2 == websocket ]] && scheme=ws path=/ws
    echo "$scheme://$(target_addr "$1")$path"
}

scenario_cookie() { # target scenario
    [[ $2 == anonymous || $2 == tls-handshake ]] && return 0
    echo "${SESSION_COOKIE[$(session_owner "$1")]}"
}

# Whose sessions a target's session scenarios use: each Cloakroom knows only
# the sessions made through it; the other targets pass the memory store's
# cookies along (nginx-tls: cloakroom-tls's).
session_owner() { # target
    case $1 in
    cloakroom-*) echo "$1" ;;
    nginx-tls) echo cloakroom-tls ;;
    *) echo cloakroom ;;
    esac
}

# The file of cookies a scenario rotates over, or nothing (one cookie).
scenario_cookie_file() { # target scenario
    [[ $2 == session-read || $2 == session-write || $2 == websocket ]] || return 0
    echo "${SESSION_FILE[$(session_owner "$1")]:-}"
}

run_wrk() { # target scenario seconds output-file
    if [[ $LOAD == bench_load ]]; then
        BENCH_COOKIE=$(scenario_cookie "$1" "$2") BENCH_COOKIES=$(scenario_cookie_file "$1" "$2") \
            BENCH_LINES=$(longest_session_list) \
            "$TARGET_DIR/release/examples/bench_load" "$THREADS" "$CONNECTIONS" "$3" \
            "$(target_url "$1" "$2")" >"$4" 2>&1
        return
    fi
    BENCH_COOKIE=$(scenario_cookie "$1" "$2") BENCH_COOKIES=$(scenario_cookie_file "$1" "$2") \
        wrk -t "$THREADS" -c "$CONNECTIONS" \
        -d "${3}s" -s "$BENCH_DIR/measure.lua" "$(target_url "$1" "$2")" >"$4" 2>&1
}

# The most sessions any target of this run rotates over: what bench_load
# repeats every list to.
longest_session_list() {
    local target longest=$SESSIONS
    for target in "${TARGETS[@]}"; do
        [[ $target == cloakroom* ]] || continue
        if (($(sessions_of "$target") > longest)); then longest=$(sessions_of "$target"); fi
    done
    echo "$longest"
}

# tls-handshake: wrk over https, one request per connection (the request
# says Connection: close, so the proxy closes and wrk reconnects), and with
# the shim so that every reconnect is a full handshake, never a resumption.
run_wrk_handshakes() { # target scenario seconds output-file
    LD_PRELOAD=$NO_RESUME_SO wrk -t "$THREADS" -c "$CONNECTIONS" -d "${3}s" \
        -H "Connection: close" -s "$BENCH_DIR/measure.lua" "$(target_url "$1" "$2")" >"$4" 2>&1
}

# h2-session-read: h2load, HTTP/2 over TLS (ALPN h2), CONNECTIONS connections
# of STREAMS concurrent streams each, with the session cookie. Appends to the
# output a BENCH line like measure.lua's; the p99 comes from h2load's
# per-request log.
run_h2load() { # target scenario seconds output-file
    local out=$4 log=${4%.txt}.log
    h2load -t "$THREADS" -c "$CONNECTIONS" -m "$STREAMS" -D "$3" \
        -H "Cookie: $(scenario_cookie "$1" "$2")" --log-file="$log" \
        "$(target_url "$1" "$2")" >"$out" 2>&1 || true
    grep -q '^Application protocol: h2$' "$out" ||
        die "h2load did not speak HTTP/2 over TLS to $1; see $out"
    local p99
    p99=$(cut -f 3 "$log" | sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) print 0; else { i = int(NR * 0.99); if (i < NR * 0.99) i++; print v[i] } }')
    local bench
    bench=$(awk -v p99="$p99" '
        /^finished in / {
            d = $3; sub(/,$/, "", d)
            if (d ~ /ms$/) { sub(/ms$/, "", d); us = d * 1000 }
            else if (d ~ /us$/) { sub(/us$/, "", d); us = d }
            else { sub(/s$/, "", d); us = d * 1e6 }
        }
        /^requests: / { done = $6; errored = $12; timeout = $14 }
        /^status codes: / { bad = $7 + $9 }   # 4xx, 5xx
        END {
            printf "BENCH requests=%d duration_us=%d p99_us=%d socket_errors=%d status_errors=%d\n",
                done, us, p99, errored + timeout, bad
        }' "$out")
    echo "$bench" >>"$out"
    rm -f "$log"
}

# websocket: CONNECTIONS tunnels (opened before the clock starts), their
# handshakes' cookies taken in turn from the sessions' list, each echoing
# one MESSAGE_BYTES message at a time; a message echoed counts as a request.
run_websocket() { # target scenario seconds output-file
    BENCH_COOKIE=$(scenario_cookie "$1" "$2") BENCH_COOKIES=$(scenario_cookie_file "$1" "$2") \
        BENCH_MESSAGE_BYTES=$MESSAGE_BYTES \
        "$TARGET_DIR/release/examples/bench_websocket" "$THREADS" "$CONNECTIONS" "$3" \
        "$(target_url "$1" "$2")" >"$4" 2>&1
}

run_load() { # target scenario seconds output-file
    case $2 in
    tls-handshake) run_wrk_handshakes "$@" ;;
    h2-session-read) run_h2load "$@" ;;
    websocket) run_websocket "$@" ;;
    *) run_wrk "$@" ;;
    esac
}

load_tool() { # scenario -> the name of its output files' prefix
    case $1 in
    h2-session-read) echo h2load ;;
    websocket) echo bench_websocket ;;
    tls-handshake) echo wrk ;;
    *) echo "$LOAD" ;;
    esac
}

warm_up() { # target scenario
    run_load "$1" "$2" "$WARMUP" "$RUN_DIR/$(load_tool "$2")-$2-$1-warmup.txt"
}

# One measured wrk run; appends a line to $RAW:
# scenario target rep req/s p99(µs) CPU-per-request(µs) errors other-load(cores)
# user-CPU-per-request(µs)
measure_once() { # target scenario rep
    local target=$1 scenario=$2 rep=$3 out pids before after foreign_before foreign_after
    local user_before user_after
    out=$RUN_DIR/$(load_tool "$scenario")-$scenario-$target-$rep.txt
    read -r -a pids <<<"$(measured_pids "$target")"
    foreign_before=$(foreign_ticks)
    before=$(cpu_ticks "${pids[@]}")
    user_before=$(user_ticks "${pids[@]}")
    run_load "$target" "$scenario" "$DURATION" "$out"
    require_all_running
    after=$(cpu_ticks "${pids[@]}")
    user_after=$(user_ticks "${pids[@]}")
    foreign_after=$(foreign_ticks)

    local requests duration_us p99_us socket_errors status_errors
    read -r requests duration_us p99_us socket_errors status_errors < <(
        awk '/^BENCH / { for (i = 2; i <= NF; i++) { split($i, kv, "="); printf "%s ", kv[2] }; print "" }' "$out"
    ) || die "$(load_tool "$scenario") printed no result; see $out"
    awk -v s="$scenario" -v t="$target" -v r="$rep" -v n="$requests" -v d="$duration_us" \
        -v p="$p99_us" -v ticks="$((after - before))" -v hz="$CLK_TCK" \
        -v e="$((socket_errors + status_errors))" -v f="$((foreign_after - foreign_before))" \
        -v uticks="$((user_after - user_before))" 'BEGIN {
            rps = d > 0 ? n * 1e6 / d : 0
            cpu = n > 0 ? sprintf("%.2f", ticks * 1e6 / hz / n) : "n/a"
            user = n > 0 ? sprintf("%.2f", uticks * 1e6 / hz / n) : "n/a"
            other = d > 0 && f > 0 ? f * 1e6 / hz / d : 0
            printf "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%.2f\t%s\n", s, t, r, rps, p, cpu, e, other, user
        }' | tee -a "$RAW" | awk -F'\t' '{
            printf "  %-13s %-15s run %s: %7d req/s, p99 %6.2f ms, %s µs CPU/req (user %s), %d errors, other load %s cores\n",
                $1, $2, $3, $4, $5 / 1000, $6, $9, $7, $8 }' >&2
}

run_matrix() {
    local scenario target rep targets
    : >"$RAW"
    for scenario in "${SCENARIOS[@]}"; do
        read -r -a targets <<<"$(scenario_targets "$scenario")"
        ((${#targets[@]} > 0)) || { log "$scenario: no target for it; skipped"; continue; }
        log "$scenario: warming up for ${WARMUP}s per target"
        for target in "${targets[@]}"; do warm_up "$target" "$scenario"; done
        require_all_running
        # Runs of the targets alternate, so a slow drift of the machine
        # (thermal, a background job) spreads over all of them alike.
        for ((rep = 1; rep <= REPS; rep++)); do
            for target in "${targets[@]}"; do measure_once "$target" "$scenario" "$rep"; done
        done
    done
}

# --- checks before measuring ---------------------------------------------

# curl, trusting this run's certificate for the TLS targets.
curl_target() { # curl arguments...
    local tls=()
    [[ ! -e $TLS_CERT ]] || tls=(--cacert "$TLS_CERT")
    curl -s --max-time 5 "${tls[@]}" "$@"
}

check_targets_answer() {
    local target body
    for target in "${TARGETS[@]}" "${TLS_TARGETS[@]}"; do
        body=$(curl_target "$(target_url "$target" anonymous)") || true
        [[ $body == hello ]] || die "$target answered '$body' to GET /, expected 'hello'"
    done
}

# What each TLS target negotiates with an OpenSSL client with OpenSSL's
# defaults (as wrk uses them; h2load sets its own cipher list): protocol,
# cipher, key exchange group; the HTTP version curl gets by ALPN; and whether
# the server resumes a session offered to it. Both should agree on the first
# ones, or the handshake rows compare different work.
check_tls() {
    local target addr out version resumed checks=()
    for target in "${TLS_TARGETS[@]}"; do
        addr=$(target_addr "$target")
        out=$(openssl s_client -connect "$addr" -servername localhost -CAfile "$TLS_CERT" \
            </dev/null 2>&1) || true
        version=$(curl_target --http2 -o /dev/null -w '%{http_version}' "https://$addr/") || true
        # Would the server resume a session a client offered? (run.sh's
        # clients never offer one, so this tells what the shim prevents.) The
        # first client sends a request and reads until the server closes, so
        # that TLS 1.3 tickets, sent after the handshake, have arrived.
        printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
            openssl s_client -connect "$addr" -servername localhost -ign_eof \
                -sess_out "$TLS_DIR/$target.session" >/dev/null 2>&1 || true
        resumed=$(openssl s_client -connect "$addr" -servername localhost -sess_in "$TLS_DIR/$target.session" \
            </dev/null 2>/dev/null | awk '/^Reused, / { print "resumes offered sessions"; exit }
                                          /^New, / { print "does not resume"; exit }') || true
        checks+=("$target: $(awk '
            /^New, / { sub(/,$/, "", $2); proto = $2; cipher = $NF }
            /^Server Temp Key: / { sub(/^Server Temp Key: /, ""); group = $0 }
            /^Verify return code: / { verify = ($4 == 0) ? "verified" : "NOT verified" }
            END { printf "%s %s, %s, certificate %s", proto, cipher, group, verify }' <<<"$out"), HTTP/$version by ALPN, ${resumed:-resumption unknown}")
    done
    local joined
    joined=$(printf '%s; ' "${checks[@]}")
    TLS_CHECK=${joined%; }
}

rss_kb() { # PID -> its resident set size in kB
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

peak_rss_kb() { # PID -> the largest its resident set has been, in kB
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# The target's logins (sessions_of); their cookies, one per line, into
# the file given (make_logins, bench/processes.sh).
make_sessions() { # target file
    make_logins "$(target_url "$1" anonymous)login" "$(sessions_of "$1")" "$2" "$RUN_DIR/login-$1.txt"
}

# Makes SESSIONS sessions through each Cloakroom target (GET /login); its
# session-read and session-write scenarios then rotate over their cookies
# (the direct and nginx rows send the memory store's ones, or a
# placeholder). Checks one cookie per target, and records each target's
# RSS before and after.
obtain_session_cookie() {
    # Shaped like a real signed cookie, for runs without Cloakroom.
    local placeholder="sid=s%3ANO-CLOAKROOM-SESSION-xxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    local target
    for target in "${CLOAKROOM_TARGETS[@]}"; do SESSION_COOKIE[$target]=$placeholder; done
    local addr file user checks=()
    for target in "${CLOAKROOM_TARGETS[@]}"; do
        wants_target "$target" || continue
        addr=$(target_url "$target" anonymous)
        addr=${addr%/}
        file=$RUN_DIR/cookies-$target.txt
        # The connections' buffers first, so that the growth after is the
        # sessions'.
        [[ $target == *-tls ]] || run_wrk "$target" anonymous 1 "$RUN_DIR/prewarm-$target.txt"
        RSS_BEFORE[$target]=$(rss_kb "${PID[$target]}")
        if [[ $(sessions_of "$target") == 1 ]]; then
            # h2load sends one cookie: one session is enough.
            curl_target -D - -o /dev/null "$addr/login" | tr -d '\r' |
                awk 'tolower($1) == "set-cookie:" { split($2, c, ";"); if (c[1] ~ /^sid=/) { print c[1]; exit } }' >"$file" || true
        else
            log "$target: making $(sessions_of "$target") sessions with GET /login"
            make_sessions "$target" "$file"
            SESSION_FILE[$target]=$file
        fi
        RSS_REST[$target]=$(rss_kb "${PID[$target]}")
        if [[ ! -s $file ]]; then
            checks+=("$target FAILED: GET /login set no sid cookie, so its session rows are anonymous traffic")
            continue
        fi
        SESSION_COOKIE[$target]=$(head -n 1 "$file")
        user=$(curl_target -H "Cookie: $(tail -n 1 "$file")" "$addr/whoami") || true
        if [[ $user == bench ]]; then
            checks+=("$target ok")
        else
            checks+=("$target FAILED: with a /login cookie, the upstream saw X-User '$user', expected 'bench'")
        fi
    done
    ((${#checks[@]} > 0)) || return 0
    local joined
    joined=$(printf '%s, ' "${checks[@]}")
    SESSION_CHECK="${joined%, } (ok: a cookie from /login is recognised and X-User reaches the upstream)"
    [[ $SESSION_CHECK != *FAILED* ]] || log "warning: session check: $SESSION_CHECK"
}

# --- report --------------------------------------------------------------

median() { # scenario target column-number of $RAW
    awk -F'\t' -v s="$1" -v t="$2" -v c="$3" \
        '$1 == s && $2 == t && $c ~ /^[0-9.]+$/ { print $c }' "$RAW" | sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) print "n/a"
            else if (NR % 2) print v[(NR + 1) / 2]
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

total_errors() { # scenario target
    awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t { n += $7 } END { print n + 0 }' "$RAW"
}

other_load() { # -> "median M, max X" cores used by other processes per run
    cut -f 8 "$RAW" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median %.2f, max %.2f cores", m, v[NR]
    }'
}

ratio() { # numerator denominator
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "n/a"
    }'
}

format_number() { # value printf-format [divisor]
    awk -v v="$1" -v f="$2" -v d="${3:-1}" 'BEGIN { if (v ~ /^[0-9.]+$/) printf f, v / d; else print v }'
}

tool_versions() {
    local nginx_version wrk_version
    nginx_version=$("$(nginx_bin)" -v 2>&1 | sed 's|.*nginx/||')
    wrk_version=$(wrk -v 2>&1 | awk 'NR == 1 { sub(/^debian\//, "", $2); print $2 }' || true)
    local tls_tools=""
    ! wants_tls || tls_tools=", $(h2load --version 2>&1 | awk 'NR == 1 { sub(/^nghttp2\//, "", $2); print "h2load " $2 }'), $(openssl version | awk '{ print $1 " " $2 }')"
    echo "nginx $nginx_version, wrk $wrk_version$tls_tools"
}

load_line() {
    local scenario line="" plain=0 handshake=0 h2=0 websocket=0
    for scenario in "${SCENARIOS[@]}"; do
        case $scenario in
        tls-handshake) handshake=1 ;;
        h2-session-read) h2=1 ;;
        websocket) websocket=1 ;;
        *) plain=1 ;;
        esac
    done
    if [[ $LOAD == bench_load ]]; then
        ((plain == 0)) || line+="; plain HTTP: bench_load $THREADS threads, $CONNECTIONS connections, every cookie list repeated to $(longest_session_list) requests"
    else
        ((plain == 0)) || line+="; plain HTTP: wrk -t $THREADS -c $CONNECTIONS"
    fi
    ((handshake == 0)) || line+="; tls-handshake: wrk -t $THREADS -c $CONNECTIONS -H 'Connection: close' over https, with bench/no_resume.c preloaded (one request per connection, every handshake a full one)"
    ((h2 == 0)) || line+="; h2-session-read: h2load -t $THREADS -c $CONNECTIONS -m $STREAMS (HTTP/2 over TLS) with the session cookie"
    ((websocket == 0)) || line+="; websocket: bench_websocket $THREADS threads, $CONNECTIONS tunnels, messages of $MESSAGE_BYTES bytes"
    echo "${line#; }"
}

# The ratio of each repetition (the two targets of one repetition ran one
# after the other, so they saw the same machine) in one column of $RAW (4:
# req/s, 6: CPU per request), their median, and the interval that holds the
# true median with 95% confidence (median_interval, bench/stats.sh):
# "r1 r2 ...|median|interval", or "n/a|n/a|n/a".
rep_ratios() { # scenario numerator denominator column
    local ratios
    ratios=$(paired_ratios "$@" <"$RAW")
    if [[ -z $ratios ]]; then
        echo "n/a|n/a|n/a"
        return
    fi
    printf '%s|%s|%s\n' "$(awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 }' <<<"$ratios")" \
        "$(median_of 2 <<<"$ratios")" "$(median_interval 2 <<<"$ratios")"
}

ratio_table() { # proxy baseline scenario...
    local proxy=$1 base=$2 scenario list middle interval cpu_middle cpu_interval
    shift 2
    cat <<EOF

| scenario | req/s, $proxy / $base | per repetition | their median | 95% interval of that median | CPU per request, $proxy / $base | CPU per repetition: median [95% interval] |
|---|---:|---|---:|---:|---:|---:|
EOF
    for scenario in "$@"; do
        IFS='|' read -r list middle interval <<<"$(rep_ratios "$scenario" "$proxy" "$base" 4)"
        IFS='|' read -r _ cpu_middle cpu_interval <<<"$(rep_ratios "$scenario" "$proxy" "$base" 6)"
        printf '| %s | %s | %s | %s | %s | %s | %s [%s] |\n' "$scenario" \
            "$(ratio "$(median "$scenario" "$proxy" 4)" "$(median "$scenario" "$base" 4)")" \
            "$list" "$middle" "$interval" \
            "$(ratio "$(median "$scenario" "$proxy" 6)" "$(median "$scenario" "$base" 6)")" \
            "$cpu_middle" "$cpu_interval"
    done
}

render_report() {
    local commit scenario target targets tls_lines="" websocket_line=""
    if wants_scenario websocket; then
        websocket_line="
- websocket rows: $CONNECTIONS WebSocket tunnels per target (to the upstream's echo at /ws, each with the next of the sessions' cookies), opened before measuring; each sends a binary message of $MESSAGE_BYTES bytes and waits for its echo before the next, so req/s is messages echoed per second and CPU per request is CPU per round trip of a message"
    fi
    commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo "none yet")
    if wants_tls; then
        tls_lines="
- TLS: one self-signed ECDSA P-256 certificate made for this run, served by both proxies; TLS 1.2 and 1.3 allowed on both; resumption: nginx-tls has session tickets and cache off, cloakroom-tls keeps rustls' default session cache, and the client never offers a session, so no connection resumes
- TLS check: $TLS_CHECK
- tls-handshake rows: one request per new connection, so req/s is handshakes/s and CPU per request is CPU per handshake (with its one proxied request); their p99 is wrk's, from writing the request after the handshake to the response, so it leaves the handshake out"
    fi
    cat <<EOF
# Cloakroom benchmark

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $commit (working tree as built); Cloakroom binary: ${CLOAKROOM#"$REPO_DIR"/}
- machine: nproc $(nproc --all), $(uname -sr), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
- tools: $(tool_versions)
- load: $(load_line); per cell a ${WARMUP} s warm-up, then $REPS run(s) of $DURATION s; medians shown
- sessions: the session-read and session-write requests rotate over $SESSIONS session cookie(s) per Cloakroom target ($MID_SESSIONS for the -mid twins, $SCALE_SESSIONS for the -scale twins), made through it with GET /login before measuring (h2-session-read sends one)
- Redis cache: store.cache_sessions = ${CACHE_SESSIONS:-the default (100000)} in the Redis targets$(redis_line)
- session check: $SESSION_CHECK$tls_lines$websocket_line
- other processes' CPU during the measured runs: $(other_load) (near 0: a quiet machine)

| scenario | target | req/s | p99 latency (ms) | CPU per request (µs) | of which user (µs) | errors |
|---|---|---:|---:|---:|---:|---:|
EOF
    for scenario in "${SCENARIOS[@]}"; do
        read -r -a targets <<<"$(scenario_targets "$scenario")"
        for target in "${targets[@]}"; do
            printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$scenario" "$target" \
                "$(format_number "$(median "$scenario" "$target" 4)" '%.0f')" \
                "$(format_number "$(median "$scenario" "$target" 5)" '%.2f' 1000)" \
                "$(format_number "$(median "$scenario" "$target" 6)" '%.1f')" \
                "$(format_number "$(median "$scenario" "$target" 9)" '%.1f')" \
                "$(total_errors "$scenario" "$target")"
        done
    done
    local proxy plain=() tls=()
    for scenario in "${SCENARIOS[@]}"; do
        if is_tls_scenario "$scenario"; then tls+=("$scenario"); else plain+=("$scenario"); fi
    done
    if ((${#plain[@]} > 0)) && wants_target nginx; then
        for proxy in cloakroom cloakroom-redis cloakroom-mid cloakroom-redis-mid cloakroom-scale cloakroom-redis-scale cloakroom-redis-unix; do
            if wants_target "$proxy"; then ratio_table "$proxy" nginx "${plain[@]}"; fi
        done
    fi
    local size
    for proxy in cloakroom cloakroom-redis; do
        for size in mid scale; do
            if ((${#plain[@]} > 0)) && wants_target "$proxy" && wants_target "$proxy-$size"; then
                ratio_table "$proxy-$size" "$proxy" "${plain[@]}"
            fi
        done
    done
    for proxy in cloakroom-observed cloakroom-idle; do
        if ((${#plain[@]} > 0)) && wants_target cloakroom && wants_target "$proxy"; then
            ratio_table "$proxy" cloakroom "${plain[@]}"
        fi
    done
    if ((${#plain[@]} > 0)) && wants_target cloakroom-redis && wants_target cloakroom-redis-unix; then
        ratio_table cloakroom-redis-unix cloakroom-redis "${plain[@]}"
    fi
    if ((${#tls[@]} > 0)) && wants_target nginx-tls && wants_target cloakroom-tls; then
        ratio_table cloakroom-tls nginx-tls "${tls[@]}"
    fi
    memory_table
    return 0
}

# Each Cloakroom's resident memory: before its sessions were made, with
# them at rest, and at its peak (under load, by the end of the run); and
# the growth per session. The Redis store's sessions live in redis-server,
# whose memory is shown beside it.
memory_table() {
    local target rows=""
    for target in "${CLOAKROOM_TARGETS[@]}"; do
        [[ -n ${RSS_REST[$target]:-} && $target != *-tls ]] || continue
        rows+=$(memory_row "$target" "${PID[$target]}" "${RSS_BEFORE[$target]}" "${RSS_REST[$target]}" "$(sessions_of "$target")")$'\n'
        if [[ $target == cloakroom-redis* ]]; then
            local redis=redis${target#cloakroom-redis}
            [[ -n ${REDIS_RSS_BEFORE[$redis]:-} ]] &&
                rows+=$(memory_row "redis-server ($target's store)" "${PID[$redis]}" "${REDIS_RSS_BEFORE[$redis]}" "${REDIS_RSS_REST[$redis]}" "$(sessions_of "$target")")$'\n'
        fi
    done
    [[ -n $rows ]] || return 0
    cat <<EOF

Memory, with $SESSIONS session(s) of {"user":{"name":"bench"}} per target ($MID_SESSIONS for the -mid twins, $SCALE_SESSIONS for the -scale twins; "before": after 1 s of anonymous load, so connection buffers are counted there; bytes per session mean something from about 100k sessions on):

| process | RSS before (MB) | RSS with the sessions, at rest (MB) | peak RSS (MB) | bytes per session |
|---|---:|---:|---:|---:|
EOF
    printf '%s' "$rows"
}

memory_row() { # name PID before-kB rest-kB sessions
    local peak
    peak=$(peak_rss_kb "$2" 2>/dev/null || echo "")
    awk -v name="$1" -v before="$3" -v rest="$4" -v peak="$peak" -v n="$5" 'BEGIN {
        printf "| %s | %.1f | %.1f | %s | %.0f |", name, before / 1024, rest / 1024,
            peak == "" ? "n/a" : sprintf("%.1f", peak / 1024), (rest - before) * 1024 / n
    }'
}

report_proxy_log() {
    local proxy logfile
    for proxy in "${CLOAKROOM_TARGETS[@]}"; do
        logfile=$RUN_DIR/$proxy.log
        [[ -s $logfile ]] || continue
        log "$proxy logged $(wc -l <"$logfile") line(s) at RUST_LOG=warn; the first ones:"
        head -n 5 "$logfile" >&2
    done
}

main() {
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    trap stop_everything EXIT
    trap 'exit 130' INT TERM

    check_scenarios
    check_target_names
    if wants_tls; then
        if wants_target nginx; then TLS_TARGETS+=(nginx-tls); fi
        if wants_target cloakroom; then TLS_TARGETS+=(cloakroom-tls); fi
    fi
    # Only TLS scenarios: the plain-HTTP targets are not started at all.
    wants_plain || TARGETS=()

    [[ $SESSIONS =~ ^[1-9][0-9]*$ ]] || die "SESSIONS must be a positive number, not '$SESSIONS'"
    [[ $SCALE_SESSIONS =~ ^[1-9][0-9]*$ ]] || die "SCALE_SESSIONS must be a positive number, not '$SCALE_SESSIONS'"
    [[ $MID_SESSIONS =~ ^[1-9][0-9]*$ ]] || die "MID_SESSIONS must be a positive number, not '$MID_SESSIONS'"
    [[ -z $CACHE_SESSIONS || $CACHE_SESSIONS =~ ^[0-9]+$ ]] ||
        die "CACHE_SESSIONS must be a number (0: no cache), not '$CACHE_SESSIONS'"
    [[ $LOAD == wrk || $LOAD == bench_load ]] || die "LOAD must be wrk or bench_load, not '$LOAD'"
    install_missing_tools
    build_binaries
    pin_cpus
    make_base_config
    if wants_tls; then make_tls_files; fi
    start_upstream
    if wants_target nginx; then start_nginx; fi
    if wants_target cloakroom; then start_cloakroom; fi
    if wants_target cloakroom-redis; then
        start_redis redis
        start_cloakroom_redis cloakroom-redis redis
    fi
    if wants_target cloakroom-redis-unix; then
        start_redis redis-unix
        start_cloakroom_redis cloakroom-redis-unix redis-unix
    fi
    local size
    for size in mid scale; do
        if wants_target "cloakroom-$size"; then start_cloakroom_sized "cloakroom-$size"; fi
        if wants_target "cloakroom-redis-$size"; then
            start_redis "redis-$size"
            start_cloakroom_redis "cloakroom-redis-$size" "redis-$size"
        fi
    done
    if wants_target nginx-tls; then start_nginx_tls; fi
    if wants_target cloakroom-tls; then start_cloakroom_tls; fi
    if wants_target cloakroom-observed; then start_cloakroom_observed; fi
    if wants_target cloakroom-idle; then start_cloakroom_idle; fi
    check_targets_answer
    if wants_tls; then check_tls; fi
    local redis
    for redis in "${!REDIS_AT[@]}"; do REDIS_RSS_BEFORE[$redis]=$(rss_kb "${PID[$redis]}"); done
    obtain_session_cookie
    for redis in "${!REDIS_AT[@]}"; do REDIS_RSS_REST[$redis]=$(rss_kb "${PID[$redis]}"); done
    run_matrix
    render_report | tee "$RESULTS_DIR/latest.md"
    report_proxy_log
}

main "$@"
