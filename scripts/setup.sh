#!/usr/bin/env bash
# Installs what building and testing need on a machine that has only rustup and cargo.
# Safe to run again: each step is skipped when already done.
set -euo pipefail

CARGO_COMPONENT_VERSION=0.21.1

# wasm32-wasip2 for plain `cargo build` guests; wasm32-wasip1 because cargo-component
# builds for it and adapts the result into a component; musl for the static host binary
# that the container image ships.
rustup target add wasm32-wasip2 wasm32-wasip1 x86_64-unknown-linux-musl

if ! cargo component --version 2>/dev/null | grep -q "cargo-component $CARGO_COMPONENT_VERSION"; then
  cargo install cargo-component --version "$CARGO_COMPONENT_VERSION" --locked
fi

# The container tests build the image with podman and run it under runc (podman's own
# default may be crun) and under gVisor (runsc, the sandbox of Cloud Run's first
# generation); musl-gcc compiles the C parts of the static host; the image ships the CA
# bundle that ca-certificates generates.
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v runsc >/dev/null \
  || ! command -v musl-gcc >/dev/null || [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y podman runc runsc musl-tools ca-certificates
fi

# podman raises every container's open-file limit past what a machine with a lower hard
# limit allows, and `podman run` then fails ("error setting rlimit type 7"): let
# containers inherit the limits instead.
conf=/etc/containers/containers.conf
if ! grep -qs '^[[:space:]]*default_ulimits[[:space:]]*=' "$conf"; then
  "${sudo[@]}" mkdir -p "$(dirname "$conf")"
  if grep -qs '^\[containers\]' "$conf"; then
    "${sudo[@]}" sed -i '/^\[containers\]/a default_ulimits = []' "$conf"
  else
    printf '[containers]\ndefault_ulimits = []\n' | "${sudo[@]}" tee -a "$conf" >/dev/null
  fi
fi
