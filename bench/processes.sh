# Sourced by the bench scripts (bench/run.sh, footprint.sh, locality.sh,
# compare.sh): messages, the processes a script starts, waits for and
# stops, free ports, the bench config on a script's own addresses, and the
# logins that make its sessions. The script sets SCRIPT (its name, for
# messages), RUN_DIR (where each process's log is, as NAME.log),
# `declare -A PID=()` (what it started: name -> PID), BENCH_DIR (for
# bench_config and make_logins), and for make_logins THREADS and
# CONNECTIONS, before it calls these.

log() { printf '%s\n' "$*" >&2; }
die() {
    log "$SCRIPT: $*"
    exit 1
}

port_is_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

require_free_port() {
    ! port_is_open "$1" || die "something already listens on $1; stop it first"
}

wait_for_port() { # name address
    local name=$1 addr=$2 tries
    for ((tries = 0; tries < 100; tries++)); do
        port_is_open "$addr" && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not start listening on $addr; the end of its log:"
    tail -n 20 "$RUN_DIR/$name.log" >&2 || true
    die "$name failed to start"
}

# A free port on 127.0.0.1, probed at random away from the fixed ones, and
# below the kernel's ephemeral range: a port there can be the local end of
# some connection, which no listener answers on but which makes bind fail.
free_port() {
    local port tries first=20000 span=20000 ephemeral
    read -r ephemeral _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || ephemeral=
    if [[ $ephemeral =~ ^[0-9]+$ ]] && ((ephemeral > first + 1000)); then
        span=$((ephemeral - first))
    fi
    for ((tries = 0; tries < 100; tries++)); do
        port=$((first + RANDOM % span))
        port_is_open "127.0.0.1:$port" || { echo "$port"; return 0; }
    done
    die "found no free port"
}

# bench/proxy.bench.toml (in BENCH_DIR) listening on LISTEN, in front of
# UPSTREAM (a URL), its [store] table's contents replaced by STORE (lines
# of TOML), written to OUT.
bench_config() { # listen upstream store out
    awk -v listen="$1" -v upstream="$2" -v store="$3" '
        /^\[/ { table = $0; print; if (table == "[store]") print store; next }
        table == "[store]" { next }
        table == "[server]" && /^listen = / { print "listen = \"" listen "\""; next }
        table == "[upstream]" && /^url = / { print "url = \"" upstream "\""; next }
        { print }' "$BENCH_DIR/proxy.bench.toml" >"$4"
    grep -q "^listen = \"$1\"" "$4" || die "could not set server.listen in $4"
}

# SIGTERM to everything started, SIGKILL to what is still there 5 s later.
stop_started() {
    local name pid waited
    for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
    for name in "${!PID[@]}"; do
        pid=${PID[$name]}
        for ((waited = 0; waited < 50; waited++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not stop within 5 s of SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PID=()
}

# COUNT logins with wrk and bench/login.lua at URL (a GET that answers
# with a session, such as /login); their cookies, one per line, into FILE,
# wrk's output into OUT. wrk runs until its threads' files hold them all
# (its threads stop at their share; wrk itself waits for its -d, so it is
# interrupted then).
make_logins() { # url count file out
    local url=$1 count=$2 file=$3 out=$4 wrk_pid made=0
    BENCH_SESSIONS=$count BENCH_THREADS=$THREADS BENCH_COOKIES_OUT=$file \
        wrk -t "$THREADS" -c "$CONNECTIONS" -d 3600s -s "$BENCH_DIR/login.lua" \
        "$url" >"$out" 2>&1 &
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        # No file yet: none made.
        made=$( (cat "$file".* 2>/dev/null || true) | wc -l)
        ((made < count)) || break
        sleep 0.2
    done
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
    awk -v n="$count" 'NR <= n' "$file".* >"$file" 2>/dev/null || true
    rm -f "$file".*
    made=$(wc -l <"$file")
    ((made == count)) || die "made $made of $count sessions at $url; see $out"
}
