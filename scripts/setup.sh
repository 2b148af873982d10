#!/usr/bin/env bash
# Installs what building and testing need on a machine that has only rustup and cargo.
# Safe to run again: each step is skipped when already done.
set -euo pipefail

CARGO_COMPONENT_VERSION=0.21.1

# wasm32-wasip2 for plain `cargo build` guests; wasm32-wasip1 because cargo-component
# builds for it and adapts the result into a component.
rustup target add wasm32-wasip2 wasm32-wasip1

if ! cargo component --version 2>/dev/null | grep -q "cargo-component $CARGO_COMPONENT_VERSION"; then
  cargo install cargo-component --version "$CARGO_COMPONENT_VERSION" --locked
fi
