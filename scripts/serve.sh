#!/usr/bin/env bash
# Serves the hello component on $PORT (default 8080). Builds only what that needs: the
# wasm32-wasip2 target (added with rustup when missing), the hello guest and the host, in
# release. Installs nothing else, needs no root, and writes nothing outside target/,
# ~/.rustup and ~/.cargo.
#
#   scripts/serve.sh [--cargo-component] [WASI-HOST SERVE FLAGS...]
#
# --cargo-component builds the guest with cargo-component instead of plain cargo
# (installing it with `cargo install` the first time, a few minutes). Every other
# argument goes to `wasi-host serve`, e.g. `--addr 127.0.0.1:3000`.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"

guest=plain
if [ "${1:-}" = --cargo-component ]; then
  guest=cargo-component
  shift
fi

# The committed guest/src/bindings.rs lets plain cargo build the component: the target
# is all it needs.
add_rust_targets wasm32-wasip2
if [ "$guest" = cargo-component ]; then
  install_cargo_component
  cargo component build -p hello --release
  component=target/wasm32-wasip1/release/hello.wasm
else
  cargo build -p hello --release --target wasm32-wasip2
  component=target/wasm32-wasip2/release/hello.wasm
fi
cargo build -p wasi-host --release
exec target/release/wasi-host serve "$component" "$@"
