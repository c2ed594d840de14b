#!/usr/bin/env bash
# Builds the container image and checks it the way an operator runs it:
# the image builds, `docker run` serves the demo app through Cloakroom (a
# login, a session that counts visits, a logout), the HEALTHCHECK turns
# healthy, and `docker stop` drains and exits 0 within server.shutdown_grace.
# Prints the image size at the end.
#
#   sudo docker/check.sh          # everything (the base images first, if missing)
#   sudo docker/check.sh bases    # only the local base images
#
# Needs: a running Docker engine, debootstrap (for the local base images),
# curl, and a Rust toolchain on this machine (copied into the local build
# image). On Debian: apt-get install docker.io debootstrap curl, then start
# the engine (e.g. `dockerd > dockerd.log 2>&1 &`). Run as root.
#
# No registry is needed. By default the image is built on two local base
# images made here with debootstrap, standing in for the Dockerfile's
# defaults (which need a registry):
#   cloakroom-local/rust:bookworm  Debian minbase + gcc + this machine's Rust
#                                  toolchain           (for rust:1-bookworm)
#   cloakroom-local/cc:bookworm    glibc, libgcc, CA certificates, tzdata,
#                                  netbase, the nonroot user 65532 and no
#                                  shell               (for distroless cc-debian12)
# With registry access, use the real ones instead:
#   BUILD_IMAGE=rust:1-bookworm RUNTIME_IMAGE=gcr.io/distroless/cc-debian12 docker/check.sh
# The image is the profile-guided build by default, as the Dockerfile's
# (its build stage fetches the training's tools from Debian's packages);
# the plain one (--build-arg PGO=false):
#   PGO=false docker/check.sh
#
# Every container runs with --network host, so all traffic stays on this
# machine; the ports 3000 (the demo app), 8080 (Cloakroom) and 9090 (its
# ops listener) must be free. `app` (the upstream's host name in
# docker/proxy.toml) is mapped to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_IMAGE=${BUILD_IMAGE:-cloakroom-local/rust:bookworm}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-cloakroom-local/cc:bookworm}
IMAGE=${IMAGE:-cloakroom:check}
# true: the profile-guided build; false: the plain one (the Dockerfile's
# PGO build argument).
PGO=${PGO:-true}
DEMO_IMAGE=${DEMO_IMAGE:-cloakroom-demo:check}
SUITE=bookworm
# Optional: a Debian mirror URL for debootstrap (its default otherwise).
DEBIAN_MIRROR=${DEBIAN_MIRROR:-}
# The CA certificates cargo trusts inside the local build image.
CA_BUNDLE=${CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
PROXY=cloakroom-check
APP=cloakroom-check-app
# server.shutdown_grace in docker/proxy.toml.
GRACE_SECONDS=$(sed -n 's/^shutdown_grace = "\([0-9]*\)s".*/\1/p' docker/proxy.toml)

say() { printf '\n==> %s\n' "$*"; }
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}

scratch=()
cleanup() {
    docker rm -f "$PROXY" "$APP" > /dev/null 2>&1 || true
    for dir in "${scratch[@]}"; do
        rm -rf --one-file-system "$dir"
    done
}
trap cleanup EXIT

have_image() { docker image inspect "$1" > /dev/null 2>&1; }

# ---------------------------------------------------------------------------
# The local base images
# ---------------------------------------------------------------------------

# Copies the files of the Debian package $2 installed in root $1 into root $3
# (documentation, manuals and translations left out). Paths are written
# under their real directories (usr/lib, not lib: both roots are merged-usr).
copy_package() {
    local from=$1 package=$2 to=$3 list="" candidate path dir
    for candidate in "$from"/var/lib/dpkg/info/"$package".list "$from"/var/lib/dpkg/info/"$package":*.list; do
        [ -f "$candidate" ] && list=$candidate && break
    done
    [ -n "$list" ] || return 0
    while IFS= read -r path; do
        case $path in
            /usr/share/doc/* | /usr/share/man/* | /usr/share/info/* | /usr/share/lintian/* | /usr/share/locale/*) continue ;;
        esac
        [ -e "$from$path" ] || [ -L "$from$path" ] || continue
        if [ -d "$from$path" ] && [ ! -L "$from$path" ]; then continue; fi
        dir=$(cd "$from$(dirname "$path")" && pwd -P)
        (cd "$from" && cp -a --parents ".${dir#"$from"}/$(basename "$path")" "$to/")
    done < "$list"
}

# A root with what gcr.io/distroless/cc-debian12 holds that a Rust binary
# can use: glibc, libgcc, the CA bundle, tzdata, netbase, os-release, the
# users root, nobody and nonroot (65532). No shell, no package manager.
make_cc_root() {
    local from=$1 to=$2 package
    mkdir -p "$to"/usr/bin "$to"/usr/sbin "$to"/usr/lib "$to"/usr/lib64 "$to"/etc/ssl/certs \
        "$to"/tmp "$to"/root "$to"/home/nonroot "$to"/var/tmp
    ln -s usr/bin "$to"/bin
    ln -s usr/sbin "$to"/sbin
    ln -s usr/lib "$to"/lib
    ln -s usr/lib64 "$to"/lib64
    for package in base-files libc6 libgcc-s1 netbase tzdata; do
        copy_package "$from" "$package" "$to"
    done
    cp "$from"/etc/ssl/certs/ca-certificates.crt "$to"/etc/ssl/certs/
    cat > "$to"/etc/passwd << 'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
    cat > "$to"/etc/group << 'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$to"/etc/nsswitch.conf
    chmod 1777 "$to"/tmp "$to"/var/tmp
    chmod 700 "$to"/root "$to"/home/nonroot
    chown 65532:65532 "$to"/home/nonroot
}

build_bases() {
    local need_rust=0 need_cc=0 root cc sysroot part
    [[ $BUILD_IMAGE == cloakroom-local/* ]] && ! have_image "$BUILD_IMAGE" && need_rust=1
    [[ $RUNTIME_IMAGE == cloakroom-local/* ]] && ! have_image "$RUNTIME_IMAGE" && need_cc=1
    if [ $need_rust = 0 ] && [ $need_cc = 0 ]; then
        say "base images: $BUILD_IMAGE and $RUNTIME_IMAGE are there"
        return
    fi
    command -v debootstrap > /dev/null || fail "debootstrap is missing (apt-get install debootstrap)"
    root=$(mktemp -d "${TMPDIR:-/tmp}/cloakroom-root.XXXXXX")
    scratch+=("$root")
    root=$(cd "$root" && pwd -P)
    say "debootstrap $SUITE (minbase + gcc, libc6-dev, CA certificates) into $root"
    # shellcheck disable=SC2086 # DEBIAN_MIRROR is empty or one URL
    debootstrap --variant=minbase --include=ca-certificates,netbase,tzdata,gcc,libc6-dev \
        "$SUITE" "$root" $DEBIAN_MIRROR > "$root.log" 2>&1 ||
        fail "debootstrap failed; see $root.log"
    rm -f "$root.log"

    if [ $need_cc = 1 ]; then
        cc=$(mktemp -d "${TMPDIR:-/tmp}/cloakroom-cc.XXXXXX")
        scratch+=("$cc")
        make_cc_root "$root" "$cc"
        tar -C "$cc" --numeric-owner -c . | docker import \
            -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
            -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
            - "$RUNTIME_IMAGE" > /dev/null
        say "imported $RUNTIME_IMAGE"
    fi

    if [ $need_rust = 1 ]; then
        # The toolchain `rustc` runs from here, without its documentation.
        sysroot=$(rustc --print sysroot)
        mkdir -p "$root"/usr/local/rust "$root"/usr/local/cargo
        for part in bin lib libexec etc; do
            [ -d "$sysroot/$part" ] && cp -a "$sysroot/$part" "$root"/usr/local/rust/
        done
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        # cargo fetches crates over HTTPS: inside, it trusts what this
        # machine trusts (a TLS-inspecting proxy's CA included).
        cp "$CA_BUNDLE" "$root"/etc/ssl/certs/ca-certificates.crt
        tar -C "$root" --numeric-owner -c . | docker import \
            -c 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV CARGO_HOME=/usr/local/cargo' \
            -c 'ENV CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt' \
            - "$BUILD_IMAGE" > /dev/null
        say "imported $BUILD_IMAGE ($(docker run --rm "$BUILD_IMAGE" rustc --version))"
    fi
}

# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

port_in_use() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# Prints the HTTP status of a request (curl's arguments follow).
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

expect_equal() { # what, expected, got
    [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
    echo "ok: $1 ($3)"
}

expect_in() { # what, needle, haystack
    case $3 in
        *"$2"*) echo "ok: $1" ;;
        *) fail "$1: '$2' not in: $3" ;;
    esac
}

show_logs() {
    echo "--- docker logs $PROXY" >&2
    docker logs "$PROXY" 2>&1 | tail -n 40 >&2 || true
}

command -v docker > /dev/null || fail "docker is missing (apt-get install docker.io)"
command -v curl > /dev/null || fail "curl is missing (apt-get install curl)"
docker info > /dev/null 2>&1 || fail "no Docker engine answers (start it: dockerd > dockerd.log 2>&1 &)"
build_bases
[ "${1:-}" = bases ] && exit 0

for port in 3000 8080 9090; do
    port_in_use "$port" && fail "port $port is in use on this machine; free it first"
done

say "compose.yaml"
if docker compose version > /dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose > /dev/null; then
    compose=(docker-compose)
else
    compose=()
    echo "skipped: neither the compose plugin nor docker-compose is installed"
fi
if [ "${#compose[@]}" -gt 0 ]; then
    CLOAKROOM_SECRETS=check-only "${compose[@]}" -f compose.yaml config -q ||
        fail "${compose[*]} config refused compose.yaml"
    echo "ok: ${compose[*]} config accepts compose.yaml"
fi

build_args=(--network host --build-arg "BUILD_IMAGE=$BUILD_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE"
    --build-arg "PGO=$PGO")
say "docker build -t $IMAGE (build stage on $BUILD_IMAGE, runtime on $RUNTIME_IMAGE, PGO=$PGO)"
started=$(date +%s)
docker build "${build_args[@]}" -t "$IMAGE" .
say "built in $(($(date +%s) - started)) s; docker build --target demo -t $DEMO_IMAGE"
docker build "${build_args[@]}" --target demo -t "$DEMO_IMAGE" .

say "the demo app alone (docker run $DEMO_IMAGE) on 127.0.0.1:3000"
docker rm -f "$PROXY" "$APP" > /dev/null 2>&1 || true
docker run -d --name "$APP" --network host -e DEMO_APP_LISTEN=127.0.0.1:3000 "$DEMO_IMAGE" > /dev/null

say "Cloakroom (docker run $IMAGE) on its own configuration, app -> 127.0.0.1"
secret=$(docker run --rm --network host "$IMAGE" secret)
[ "${#secret}" = 43 ] || fail "cloakroom secret printed '$secret'"
docker run -d --name "$PROXY" --network host --add-host app:127.0.0.1 \
    -e CLOAKROOM_SECRETS="$secret" "$IMAGE" > /dev/null
base=http://127.0.0.1:8080
for _ in $(seq 1 100); do
    [ "$(status_of "$base/")" = 200 ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$PROXY")" = true ] || { show_logs; fail "Cloakroom exited"; }
    sleep 0.2
done

say "the demo through Cloakroom"
jar=$(mktemp "${TMPDIR:-/tmp}/cloakroom-jar.XXXXXX")
scratch+=("$jar")
expect_equal "GET / through Cloakroom" 200 "$(status_of "$base/")"
expect_equal "anonymous browser on /account is sent to the login page" \
    "302 $base/login?next=%2Faccount" \
    "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Accept: text/html' "$base/account")"
login=$(curl -s -i -c "$jar" -b "$jar" -d username=ada "$base/login")
expect_in "login answers 303" "HTTP/1.1 303" "$login"
grep -qi '^set-cookie: sid=s%3A' <<< "$login" || fail "login set no session cookie: $login"
echo "ok: login sets the session cookie"
page=$(curl -s -b "$jar" "$base/account")
expect_in "the account page greets ada" "Hello, <b>ada</b>!" "$page"
expect_in "the visit count is in the session" "<b>1</b> time(s)" "$page"
expect_in "the session counts the next visit" "<b>2</b> time(s)" "$(curl -s -b "$jar" "$base/account")"
expect_in "logout answers 303" "HTTP/1.1 303" "$(curl -s -i -c "$jar" -b "$jar" -X POST "$base/logout")"
expect_equal "after logout, /account is refused" 401 "$(status_of -b "$jar" "$base/account")"

say "the ops listener and the process"
expect_equal "GET :9090/healthz" "ok" "$(curl -s http://127.0.0.1:9090/healthz)"
expect_equal "GET :9090/readyz" 200 "$(status_of http://127.0.0.1:9090/readyz)"
expect_equal "GET :9090/metrics" 200 "$(status_of http://127.0.0.1:9090/metrics)"
pid=$(docker inspect -f '{{.State.Pid}}' "$PROXY")
expect_equal "PID 1 of the container" "/usr/local/bin/cloakroom" "$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1)"
expect_equal "its user id" 65532 "$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"

say "HEALTHCHECK (cloakroom health): waiting for healthy"
health=starting
for waited in $(seq 1 60); do
    health=$(docker inspect -f '{{.State.Health.Status}}' "$PROXY")
    [ "$health" = starting ] || break
    sleep 1
done
echo "($health after ${waited} s of waiting)"
if [ "$health" != healthy ]; then
    docker inspect -f '{{json .State.Health}}' "$PROXY" >&2
    show_logs
fi
expect_equal "docker inspect .State.Health.Status" healthy "$health"

say "docker stop (SIGTERM; shutdown_grace is ${GRACE_SECONDS} s)"
started=$(date +%s%N)
docker stop "$PROXY" > /dev/null
took_ms=$((($(date +%s%N) - started) / 1000000))
code=$(docker inspect -f '{{.State.ExitCode}}' "$PROXY")
[ "$code" = 0 ] || show_logs
expect_equal "docker inspect .State.ExitCode" 0 "$code"
[ "$took_ms" -lt "$((GRACE_SECONDS * 1000))" ] || fail "docker stop took $took_ms ms"
echo "ok: stopped in $took_ms ms"
expect_in "the drain is logged" "drain" "$(docker logs "$PROXY" 2>&1 | tail -n 5)"
docker stop "$APP" > /dev/null
expect_equal "the demo app's exit code on docker stop" 0 "$(docker inspect -f '{{.State.ExitCode}}' "$APP")"

say "image sizes"
docker images --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E "^(REPOSITORY|$IMAGE|$DEMO_IMAGE|$RUNTIME_IMAGE)\b" || true
printf '\nall checks passed: %s is %s MB\n' "$IMAGE" \
    "$(($(docker image inspect -f '{{.Size}}' "$IMAGE") / 1000000))"
