# syntax=docker/dockerfile:1
# ingress-failover controller image: a static musl binary on distroless, running as 65532.
#   docker build -t ingress-failover:dev .
# (The chart's securityContext matches: runAsNonRoot, runAsUser 65532, read-only root.)

# Multi-arch (docker buildx --platform linux/amd64,linux/arm64, as the release workflow does):
# each platform's build stage builds for its own musl target, "$(uname -m)-unknown-linux-musl".
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
# Without the default `devcluster` feature: no embedded control plane, no demo in the image
# (scripts/check-image.sh reads these flags and checks that).
RUN cargo build --release --locked --no-default-features --target "$(uname -m)-unknown-linux-musl" \
 && cp "target/$(uname -m)-unknown-linux-musl/release/ingress-failover" /ingress-failover

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /ingress-failover /ingress-failover
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/ingress-failover"]
CMD ["run"]
