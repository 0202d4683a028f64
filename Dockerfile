# Multi-stage image: build with the Rust toolchain, run on distroless (glibc, non-root).
# Not built in this project's CI (no container engine there); see README "Running as a
# Kubernetes sidecar".
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin wsrelay

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wsrelay /usr/local/bin/wsrelay
COPY examples/wsrelay.toml /etc/wsrelay/wsrelay.toml
USER 65532:65532
EXPOSE 10010
ENTRYPOINT ["/usr/local/bin/wsrelay"]
CMD ["--config", "/etc/wsrelay/wsrelay.toml"]
