#!/usr/bin/env bash
# The container image's release binary, at target/release/cloakroom, run
# by the Dockerfile's build stage from the source tree's root:
#
#   PGO=true   the profile-guided build of bench/pgo.sh (the Dockerfile's
#              default): its training's tools installed first (Debian's
#              wrk, curl, openssl, redis-server and nghttp2-client, and
#              rustup's llvm-tools where the toolchain lacks
#              llvm-profdata), then an instrumented build, the training
#              and the optimized build, two to three times as long as a
#              plain build
#   PGO=false  `cargo build --release`
#
# bench/README.md ("A profile-guided build") has what the profile-guided
# build is worth.
set -euo pipefail

case ${PGO:-false} in
false)
    exec cargo build --release --locked --bin cloakroom
    ;;
true) ;;
*)
    echo "build-release.sh: PGO must be true or false, not '$PGO'" >&2
    exit 2
    ;;
esac

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]} > 0)); then
    command -v apt-get >/dev/null || {
        echo "build-release.sh: PGO=true needs ${missing[*]} for the training: install them in the build image, build on a Debian one (apt-get), or build the plain binary (--build-arg PGO=false)" >&2
        exit 1
    }
    echo "build-release.sh: installing ${missing[*]} for the training" >&2
    # The packages' scripts start no service here (redis-server's would):
    # the training starts its own.
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    rm -f "$policy"
    rm -rf /var/lib/apt/lists/*
fi

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
if [[ ! -x $sysroot/lib/rustlib/$host/bin/llvm-profdata ]]; then
    command -v rustup >/dev/null || {
        echo "build-release.sh: PGO=true needs llvm-profdata from rustup's llvm-tools, and this toolchain has neither it nor rustup (--build-arg PGO=false builds the plain binary)" >&2
        exit 1
    }
    rustup component add llvm-tools
fi

bench/pgo.sh
cp target/pgo/release/cloakroom target/release/cloakroom
