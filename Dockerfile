# Cloakroom's container image: the release binary on a distroless base
# (glibc, CA certificates, no shell), run as a non-root user.
#
#   docker build -t cloakroom .
#   docker run -p 8080:8080 -e CLOAKROOM_SECRETS="$(docker run --rm cloakroom secret)" \
#       -v "$PWD/proxy.toml:/etc/cloakroom/proxy.toml:ro" cloakroom
#
# The image starts on docker/proxy.toml (/etc/cloakroom/proxy.toml): it
# listens on 0.0.0.0:8080, serves /healthz, /readyz and /metrics on
# 0.0.0.0:9090, forwards to http://app:3000 and reads its secrets from
# CLOAKROOM_SECRETS. Mount your own file over it to name your app.
#
# The base images are build arguments, so local ones can stand in for them
# (docker/check.sh does that, without a registry):
#   BUILD_IMAGE    any Debian bookworm image with cargo, rustc and gcc
#   RUNTIME_IMAGE  glibc, libgcc_s and the CA certificates (rediss:// and
#                  https:// upstreams verify against them); no shell needed
#
# The binary is the profile-guided build of bench/pgo.sh, trained in the
# build stage on the benchmark's requests (the build stage installs
# redis-server, wrk, curl, openssl and h2load from Debian's packages, and
# rustup's llvm-tools, for that); see bench/README.md, "A profile-guided
# build". --build-arg PGO=false builds the plain `cargo build --release`
# binary instead: half the build time, no Debian packages fetched, about
# 5-10% more CPU per request.
#
# `--target demo` builds the demo app of examples/demo.rs alone (it listens
# on DEMO_APP_LISTEN, 0.0.0.0:3000), for compose.yaml.
ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM ${BUILD_IMAGE} AS sources
# The line tables (Cargo.toml's debug = "line-tables-only") would make the
# binary four times larger; the image keeps the symbols only, so a backtrace
# still names its functions. --build-arg RELEASE_STRIP=none keeps them.
ARG RELEASE_STRIP=debuginfo
ENV CARGO_PROFILE_RELEASE_STRIP=${RELEASE_STRIP}
WORKDIR /src
# The dependencies first, in their own layer, built against empty sources:
# a change to Cloakroom's code does not build them again.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin cloakroom \
    && rm -r src
COPY proxy.toml ./
COPY src ./src
# The copied sources can be older than the empty ones built above: touched,
# cargo sees that they changed.
RUN touch src/lib.rs src/main.rs

# The demo app's stages come before the proxy's build and do not use it:
# `--target demo` then skips that build (the profile-guided one is long) on
# BuildKit, which builds only the stages a target needs, and on Docker's
# classic builder, which builds every stage up to the target.
FROM sources AS build-demo
COPY examples/demo.rs ./examples/demo.rs
RUN cargo build --release --locked --example demo

FROM ${RUNTIME_IMAGE} AS demo
COPY --from=build-demo /src/target/release/examples/demo /usr/local/bin/cloakroom-demo
ENV DEMO_APP_LISTEN=0.0.0.0:3000
USER 65532:65532
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/cloakroom-demo", "--app-only"]

FROM sources AS build
# What the profile-guided build trains with.
COPY bench ./bench
COPY examples/bench_*.rs ./examples/
COPY docker/build-release.sh ./docker/
# PGO=true (the default): bench/pgo.sh's profile-guided build
# (docker/build-release.sh installs its training's tools). PGO=false:
# `cargo build --release`, in a half to a third of the time.
ARG PGO=true
RUN PGO=${PGO} docker/build-release.sh

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/cloakroom /usr/local/bin/cloakroom
COPY docker/proxy.toml /etc/cloakroom/proxy.toml
# distroless's nonroot user; numeric, so it needs no /etc/passwd entry.
USER 65532:65532
# 8080: the proxy; 9090: the ops listener (health, readiness, metrics).
EXPOSE 8080 9090
# Cloakroom is PID 1: SIGTERM stops accepting, drains in-flight requests
# and exits 0 within server.shutdown_grace (8 s, below docker stop's 10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/cloakroom", "health", "--config", "/etc/cloakroom/proxy.toml"]
ENTRYPOINT ["/usr/local/bin/cloakroom"]
CMD ["--config", "/etc/cloakroom/proxy.toml"]
