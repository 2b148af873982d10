#!/usr/bin/env bash
# Installs what building and testing need on a machine that has only rustup and cargo.
# Safe to run again: each step is skipped when already done.
set -euo pipefail

CARGO_COMPONENT_VERSION=0.21.1
WKG_VERSION=0.16.1
WASMTIME_VERSION=48.0.8

# wasm32-wasip2 for plain `cargo build` guests; wasm32-wasip1 because cargo-component
# builds for it and adapts the result into a component; musl for the static host binary
# that the container image ships.
rustup target add wasm32-wasip2 wasm32-wasip1 x86_64-unknown-linux-musl

if ! cargo component --version 2>/dev/null | grep -q "cargo-component $CARGO_COMPONENT_VERSION"; then
  cargo install cargo-component --version "$CARGO_COMPONENT_VERSION" --locked
fi

# wkg pushes components to the local registry of the OCI tests, as users push them. It
# compiles for about seven minutes on two cores, once per machine.
if ! wkg --version 2>/dev/null | grep -q "wkg $WKG_VERSION"; then
  cargo install wkg --version "$WKG_VERSION" --locked
fi

# wasmtime-cli, the release the host embeds: the portability tests serve each hello
# with `wasmtime serve` too and compare the answers. A long compile, once per machine.
if ! wasmtime --version 2>/dev/null | grep -q "wasmtime $WASMTIME_VERSION"; then
  cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked
fi

# Debian packages, installed only when something is missing. The container tests build
# the image with podman and run it under runc (podman's own default may be crun) and
# under gVisor (runsc, the sandbox of Cloud Run's first generation); musl-gcc compiles
# the C parts of the static host. The examples need Python 3 with venv (componentize-py) and Node.js with npm
# (componentize-js). docker-registry is the registry the OCI tests pull from.
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
packages=()
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v runsc >/dev/null \
  || ! command -v musl-gcc >/dev/null; then
  packages+=(podman runc runsc musl-tools)
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then packages+=(python3 python3-venv); fi
if ! command -v npm >/dev/null; then packages+=(nodejs npm); fi
if ! command -v docker-registry >/dev/null; then packages+=(docker-registry); fi
if [ ${#packages[@]} -gt 0 ]; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
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

# The examples' toolchains, pinned by each example: componentize-py from PyPI into a venv
# under target/, componentize-js and jco from npm (`npm ci`).
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/examples/python-hello/build.sh" --tools-only
"$root/examples/js-hello/build.sh" --tools-only
