#!/usr/bin/env bash
# A profile-guided (PGO) release build of Cloakroom: an instrumented build,
# a training run under the benchmark's workloads, the profiles merged, and
# the release build optimized with them. The compiler then lays out and
# inlines the code for the paths requests really take (bench/README.md,
# "A profile-guided build", has what it is worth).
#
#   bench/pgo.sh                       # -> target/pgo/release/cloakroom
#   CLOAKROOM_BIN=target/pgo/release/cloakroom bench/run.sh
#
# Training: bench_upstream behind the instrumented binary on
# bench/proxy.bench.toml, with the memory store and then a Redis store on a
# redis-server of its own; on each, SESSIONS logins (wrk and
# bench/login.lua), then anonymous requests, session reads and session
# writes with bench_load for TRAIN_SECONDS each, POSTs with a 4 KiB body
# and forward-auth checks (auth.forward_auth_path, as nginx's auth_request
# asks) with h2load over HTTP/1.1, and messages through WebSocket tunnels
# (bench_websocket) for TRAIN_SECONDS; then the TLS config
# (bench/proxy.bench.tls.toml, a throwaway certificate from openssl) under
# h2load, over HTTP/2 and HTTP/1.1. Code no training request takes is
# compiled for size, so every store and protocol a deployment uses must be
# in the training: this script refuses to run without redis-server or
# h2load rather than train on less.
#
# Needs: cargo, rustup's llvm-tools component (for llvm-profdata: `rustup
# component add llvm-tools`), wrk, curl, openssl, redis-server, h2load
# (Debian's wrk, curl, openssl, redis-server, nghttp2-client). The builds
# go to their own directories under target/ (pgo-instrumented/, pgo/), so
# an ordinary `cargo build --release` is not rebuilt by their flags. Flags
# already in RUSTFLAGS are kept and the profile's flag added to them (as
# whenever RUSTFLAGS is set, cargo then reads no build.rustflags from its
# config files).
set -euo pipefail

SESSIONS=${SESSIONS:-1000}          # logins per store, which the session requests rotate over
TRAIN_SECONDS=${TRAIN_SECONDS:-4}   # seconds of each scenario's load
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO_DIR/bench
RUN_DIR=$BENCH_DIR/results/pgo
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
INSTRUMENTED_DIR=$TARGET_DIR/pgo-instrumented
OPTIMIZED_DIR=$TARGET_DIR/pgo
PROFILES=$TARGET_DIR/pgo-profiles
MERGED=$PROFILES/merged.profdata

declare -A PID=() # what this script started: name -> PID

SCRIPT=pgo.sh
# shellcheck source=bench/processes.sh
. "$BENCH_DIR/processes.sh"

# llvm-profdata from the toolchain's own llvm-tools: it must read the
# profile format of the LLVM that rustc is built on.
profdata_tool() {
    local sysroot host tool
    sysroot=$(rustc --print sysroot)
    host=$(rustc -vV | sed -n 's/^host: //p')
    tool=$sysroot/lib/rustlib/$host/bin/llvm-profdata
    [[ -x $tool ]] || die "needs llvm-profdata from rustup's llvm-tools: run \`rustup component add llvm-tools\`"
    echo "$tool"
}

require_tools() {
    local tool
    for tool in cargo rustc wrk curl openssl redis-server h2load; do
        command -v "$tool" >/dev/null ||
            die "needs $tool (Debian's wrk, curl, openssl, redis-server, nghttp2-client); the training must cover every store and protocol"
    done
}

build_instrumented() {
    log "building the instrumented binary (into $INSTRUMENTED_DIR)"
    (cd "$REPO_DIR" && RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$PROFILES" \
        cargo build --release --locked --bin cloakroom --target-dir "$INSTRUMENTED_DIR")
    (cd "$REPO_DIR" && cargo build --release --locked --example bench_upstream --example bench_load \
        --example bench_websocket --target-dir "$TARGET_DIR")
    # Build scripts and proc macros ran instrumented too: their profiles
    # are not the proxy's.
    rm -rf "$PROFILES"
    mkdir -p "$PROFILES"
}

load() { # url seconds [cookie file]
    BENCH_COOKIES=${3:-} "$TARGET_DIR/release/examples/bench_load" "$THREADS" "$CONNECTIONS" "$2" "$1" \
        >>"$RUN_DIR/load.txt" 2>&1 || die "bench_load failed on $1; see $RUN_DIR/load.txt"
}

# COUNT requests with h2load, every one answered 2xx, or the training stops.
h2load_ok() { # count output h2load-arguments...
    local count=$1 out=$2
    shift 2
    h2load -n "$count" "$@" >"$out" 2>&1 || die "h2load failed; see $out"
    grep -q "status codes: $count 2xx" "$out" || die "h2load had answers other than 2xx; see $out"
}

# Messages echoed through 16 WebSocket tunnels, of the sessions in the
# cookie file in turn, for TRAIN_SECONDS, every handshake answered 101 and
# every message echoed.
websocket_ok() { # url cookie-file output
    BENCH_COOKIES=$2 "$TARGET_DIR/release/examples/bench_websocket" "$THREADS" 16 "$TRAIN_SECONDS" "$1" \
        >"$3" 2>&1 || die "bench_websocket failed on $1; see $3"
    grep -q '^BENCH requests=[1-9][0-9]* .* socket_errors=0 status_errors=0$' "$3" ||
        die "WebSocket tunnels failed or echoed nothing; see $3"
}

# The instrumented binary on CONFIG at ADDR until SIGTERM: it writes its
# profile as it exits.
run_instrumented() { # name config addr
    env -u CLOAKROOM_SECRETS RUST_LOG=warn "$INSTRUMENTED_DIR/release/cloakroom" --config "$2" \
        >"$RUN_DIR/$1.log" 2>&1 &
    PID[$1]=$!
    wait_for_port "$1" "$3"
}

stop_one() { # name
    kill -TERM "${PID[$1]}" 2>/dev/null || true
    wait "${PID[$1]}" 2>/dev/null || die "$1 did not exit cleanly; see $RUN_DIR/$1.log"
    unset "PID[$1]"
}

train_store() { # name store-toml upstream-url
    local addr config
    addr=127.0.0.1:$(free_port)
    config=$RUN_DIR/proxy.$1.toml
    bench_config "$addr" "$3" "$2" "$config"
    # Forward-auth on, for this script's own requests (from 127.0.0.1).
    sed -i -e 's|^trusted_proxies = \[\]|trusted_proxies = ["127.0.0.1"]|' \
        -e 's|^\[auth\]$|[auth]\nforward_auth_path = "/_cloakroom/auth"|' "$config"
    grep -q '^forward_auth_path = ' "$config" || die "could not set auth.forward_auth_path in $config"
    run_instrumented "$1" "$config" "$addr"
    log "training on $1: $SESSIONS logins, then anonymous requests, session reads and writes, POSTs, forward-auth checks, WebSocket messages"
    make_logins "http://$addr/login" "$SESSIONS" "$RUN_DIR/cookies-$1" "$RUN_DIR/login-$1.txt"
    load "http://$addr/" "$TRAIN_SECONDS"
    load "http://$addr/" "$TRAIN_SECONDS" "$RUN_DIR/cookies-$1"
    load "http://$addr/write" "$TRAIN_SECONDS" "$RUN_DIR/cookies-$1"
    h2load_ok 20000 "$RUN_DIR/post-$1.txt" --h1 -c 16 -d "$RUN_DIR/body.bin" \
        -H "cookie: $(head -n 1 "$RUN_DIR/cookies-$1")" "http://$addr/"
    h2load_ok 20000 "$RUN_DIR/forward-auth-$1.txt" --h1 -c 16 \
        -H "cookie: $(head -n 1 "$RUN_DIR/cookies-$1")" -H "x-original-uri: /" "http://$addr/_cloakroom/auth"
    websocket_ok "ws://$addr/ws" "$RUN_DIR/cookies-$1" "$RUN_DIR/websocket-$1.txt"
    stop_one "$1"
}

train_tls() {
    local addr config cookie
    addr=127.0.0.1:$(free_port)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$RUN_DIR/key.pem" -out "$RUN_DIR/cert.pem" >"$RUN_DIR/openssl.log" 2>&1 ||
        die "openssl could not make the certificate; see $RUN_DIR/openssl.log"
    config=$RUN_DIR/proxy.tls.toml
    sed -e "s|@CERT@|$RUN_DIR/cert.pem|" -e "s|@KEY@|$RUN_DIR/key.pem|" \
        -e "s|^listen = .*|listen = \"$addr\"|" -e "s|^url = \"http://127.0.0.1:3900\"|url = \"$1\"|" \
        "$BENCH_DIR/proxy.bench.tls.toml" >"$config"
    grep -q "^listen = \"$addr\"" "$config" || die "could not set server.listen in $config"
    run_instrumented tls "$config" "$addr"
    log "training on TLS: HTTP/2 and HTTP/1.1 over TLS with h2load"
    cookie=$(curl -sk -D - -o /dev/null "https://$addr/login" | tr -d '\r' |
        awk 'tolower($1) == "set-cookie:" { split($2, c, ";"); if (c[1] ~ /^sid=/) { print c[1]; exit } }')
    [[ -n $cookie ]] || die "GET /login over TLS set no session cookie; see $RUN_DIR/tls.log"
    h2load_ok 40000 "$RUN_DIR/tls-h2.txt" -c 32 -m 10 -H "cookie: $cookie" "https://$addr/"
    h2load_ok 20000 "$RUN_DIR/tls-h2-post.txt" -c 16 -m 10 -d "$RUN_DIR/body.bin" "https://$addr/"
    h2load_ok 20000 "$RUN_DIR/tls-h1.txt" --h1 -c 32 "https://$addr/"
    stop_one tls
}

train() {
    local upstream redis_port
    upstream=127.0.0.1:$(free_port)
    "$TARGET_DIR/release/examples/bench_upstream" "$upstream" >"$RUN_DIR/upstream.log" 2>&1 &
    PID[upstream]=$!
    wait_for_port upstream "$upstream"
    # What the POSTs send.
    head -c 4096 /dev/urandom >"$RUN_DIR/body.bin"
    redis_port=$(free_port)
    # Not "redis": that is the name (and the log) of the Cloakroom that
    # trains on this server, which train_store starts and stops.
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
        --dir "$RUN_DIR" --logfile "" >"$RUN_DIR/redis-server.log" 2>&1 &
    PID[redis-server]=$!
    wait_for_port redis-server "127.0.0.1:$redis_port"
    train_store memory 'kind = "memory"' "http://$upstream"
    train_store redis "$(printf 'kind = "redis"\nurl = "redis://127.0.0.1:%s"' "$redis_port")" "http://$upstream"
    train_tls "http://$upstream"
    stop_started
}

build_optimized() {
    local tool
    tool=$(profdata_tool)
    compgen -G "$PROFILES/*.profraw" >/dev/null || die "the training left no profile in $PROFILES"
    "$tool" merge -o "$MERGED" "$PROFILES"/*.profraw
    log "building the optimized binary (into $OPTIMIZED_DIR)"
    (cd "$REPO_DIR" && RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$MERGED" \
        cargo build --release --locked --bin cloakroom --target-dir "$OPTIMIZED_DIR")
    log "done: $OPTIMIZED_DIR/release/cloakroom"
}

main() {
    [[ $SESSIONS =~ ^[1-9][0-9]*$ ]] || die "SESSIONS must be a positive number, not '$SESSIONS'"
    [[ $TRAIN_SECONDS =~ ^[1-9][0-9]*$ ]] || die "TRAIN_SECONDS must be a positive number, not '$TRAIN_SECONDS'"
    require_tools
    profdata_tool >/dev/null
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    trap stop_started EXIT
    trap 'exit 130' INT TERM
    build_instrumented
    train
    build_optimized
}

main "$@"
