# shellcheck shell=bash
# Shared by serve.sh and setup.sh: the steps that install tools with rustup and cargo
# (into ~/.rustup and ~/.cargo only), each skipped when done, and cargo-component's pinned
# version, which both install.

CARGO_COMPONENT_VERSION=0.21.1

# shellcheck disable=SC2034 # read by the scripts that source this file
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# Adds each rustup TARGET that is not installed yet.
add_rust_targets() {
  command -v rustup >/dev/null ||
    die "rustup not found: add the targets $* to your Rust toolchain (https://rustup.rs installs rustup)"
  local installed missing=()
  installed=$(rustup target list --installed)
  for target in "$@"; do
    grep -qx "$target" <<<"$installed" || missing+=("$target")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    rustup target add "${missing[@]}"
  fi
}

# Whether `COMMAND... --version` runs and names VERSION.
has_version() {
  local version=$1
  shift
  local reported
  reported=$("$@" --version 2>/dev/null) && grep -qw -- "$version" <<<"$reported"
}

# cargo_install CRATE VERSION COMMAND...: installs CRATE at VERSION with cargo unless
# `COMMAND... --version` already reports that version.
cargo_install() {
  local crate=$1 version=$2
  shift 2
  has_version "$version" "$@" || cargo install "$crate" --version "$version" --locked
}

# cargo-component builds for wasm32-wasip1 and adapts the result into a component.
install_cargo_component() {
  add_rust_targets wasm32-wasip1
  cargo_install cargo-component "$CARGO_COMPONENT_VERSION" cargo component
}
