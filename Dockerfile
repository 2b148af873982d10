# The image for Cloud Run and GKE: a static host binary and the hello component on an
# empty base, run as a non-root user, needing no writable file system.
#
#   docker build -t wasi-host .                              # or podman build
#   docker run --rm --read-only -p 8080:8080 wasi-host
#
# Needs BuildKit (Docker's default builder since Docker 23; podman has it too), for the
# cache mounts and `COPY --chmod`. The image is built for the builder's architecture;
# `--platform linux/arm64` (or `linux/amd64`) builds for another, running the build
# stage under emulation, which is slow but needs no cross toolchain.

FROM rust:1.95-bookworm AS build
# amd64 or arm64: set by BuildKit and podman from --platform; the classic builder leaves
# it empty, and the build machine's own architecture is used.
ARG TARGETARCH
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && arch=${TARGETARCH:-$(dpkg --print-architecture)} \
 && case "$arch" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "no musl target known for architecture $arch" >&2; exit 1 ;; \
    esac > /musl-target \
 && rustup target add "$(cat /musl-target)" wasm32-wasip2
# Release settings for the image only, so Cargo.toml keeps local release builds
# debuggable and quick to build. The container tests build the host with every CARGO_
# variable set here. Whole-program optimization keeps the image inside its 36 MB budget.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
ENV CARGO_PROFILE_RELEASE_LTO=fat
ENV CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
WORKDIR /src
COPY . .
# The crates downloaded and the build outputs stay in BuildKit's cache between builds:
# after a source edit only the workspace's own crates compile again (and the final link).
# Everything the runtime stage takes from this one is left in /out, outside the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    musl=$(cat /musl-target) \
 && cargo build --release --locked -p wasi-host --target "$musl" \
 && cargo build --release --locked -p hello --target wasm32-wasip2 \
 && mkdir -p /out \
 && cp "target/$musl/release/wasi-host" target/wasm32-wasip2/release/hello.wasm /out/ \
 && /out/wasi-host compile /out/hello.wasm -o /out/hello.cwasm
# The image carries the component precompiled by its own host binary: it serves in
# milliseconds, with no compiler work at cold start.

# The container tests build this stage alone, from the Dockerfile's own text, with a
# `build` context holding the same /out: keep every COPY `--from=build`. The host has
# its TLS roots built in (webpki-roots), so the image needs no CA bundle.
FROM scratch AS runtime
COPY --from=build /out/wasi-host /wasi-host
COPY --from=build --chmod=0444 /out/hello.cwasm /app/hello.cwasm
USER 65532:65532
ENV WASI_HOST_COMPONENT=/app/hello.cwasm
# A serving process per CPU the container may use: one on a 1-vCPU Cloud Run instance.
ENV WASI_HOST_WORKERS=auto
# mimalloc otherwise commits its first arena eagerly (huge pages): tens of milliseconds
# of cold start and ~10 MiB of RSS for nothing.
ENV MIMALLOC_ARENA_EAGER_COMMIT=0
EXPOSE 8080
ENTRYPOINT ["/wasi-host", "serve"]
