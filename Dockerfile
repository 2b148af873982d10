# The image for Cloud Run and GKE: a static host binary and the hello component on an
# empty base, run as a non-root user, needing no writable file system.

FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl wasm32-wasip2 \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p wasi-host --target x86_64-unknown-linux-musl \
 && cargo build --release --locked -p hello --target wasm32-wasip2 \
 && mkdir -p /out \
 && cp target/x86_64-unknown-linux-musl/release/wasi-host /out/ \
 && install -m 0444 target/wasm32-wasip2/release/hello.wasm /out/hello.wasm

FROM scratch
COPY --from=build /out/wasi-host /wasi-host
COPY --from=build /out/hello.wasm /app/hello.wasm
USER 65532:65532
ENV PORT=8080 WASI_HOST_COMPONENT=/app/hello.wasm
EXPOSE 8080
ENTRYPOINT ["/wasi-host", "serve"]
