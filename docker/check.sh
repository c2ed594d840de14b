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
DEMO_IMAGE=${DEMO_IMAGE:-cloakroom-demo:check}
SUITE=bookworm
# Optional: a Debian mirror URL for debootstrap (its default otherwise).
DEBIAN_MIRROR=${DEBIAN_MIRROR:-}
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
    local from=$1 package=$2 to=$3 list path dir
    list=$(ls "$from"/var/lib/dpkg/info/"$package".list "$from"/var/lib/dpkg/info/"$package":*.list 2> /dev/null | head -n 1)
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
        tar -C "$root" --numeric-owner -c . | docker import \
            -c 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV CARGO_HOME=/usr/local/cargo' \
            - "$BUILD_IMAGE" > /dev/null
        say "imported $BUILD_IMAGE ($(docker run --rm "$BUILD_IMAGE" rustc --version))"
    fi
}

docker info > /dev/null 2>&1 || fail "no Docker engine answers (start dockerd first)"
build_bases
[ "${1:-}" = bases ] && exit 0
