# Build: docker build -t cloakroom .
# Run:   docker run -p 8080:8080 -e CLOAKROOM_SECRETS="$(cloakroom secret)" \
#          -v "$PWD/proxy.toml:/etc/cloakroom/proxy.toml:ro" cloakroom
# The mounted proxy.toml must listen on 0.0.0.0:8080 inside the container.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY proxy.toml ./
COPY tests ./tests
COPY examples ./examples
RUN cargo build --release --locked --bin cloakroom

FROM debian:bookworm-slim
# The system's root certificates: rediss:// (the Redis store over TLS)
# verifies against them.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --no-create-home --shell /usr/sbin/nologin cloakroom
COPY --from=build /src/target/release/cloakroom /usr/local/bin/cloakroom
COPY proxy.toml /etc/cloakroom/proxy.toml
USER cloakroom
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cloakroom"]
CMD ["--config", "/etc/cloakroom/proxy.toml"]
