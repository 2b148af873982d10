# shellcheck shell=bash
# Shared by the examples' build scripts. A script sourcing this defines install_tools
# (installs its pinned toolchain, skipped when already done) and build OUTPUT (writes
# the component), then calls `main "$@"`.

EXAMPLE_DIR=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXAMPLE=$(basename "$EXAMPLE_DIR")
# Toolchains and outputs live under the workspace's git-ignored target/.
EXAMPLES_TARGET=$ROOT_DIR/target/examples

log() { printf '[%s] %s\n' "$EXAMPLE" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Fails, saying what to install, when COMMAND is not on PATH.
require() {
  local command=$1 what=$2
  command -v "$command" >/dev/null || die "$command not found: install $what (scripts/setup.sh does)"
}

# Installs the example's requirements.txt into a fresh venv at VENV (WHAT names them
# in the log), unless VENV/.installed, touched last, is newer than requirements.txt.
install_requirements() {
  local venv=$1 what=$2
  [[ -f $venv/.installed && $venv/.installed -nt $EXAMPLE_DIR/requirements.txt ]] && return
  require python3 "Python 3 with its venv module"
  log "installing $what into ${venv#"$ROOT_DIR"/}"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$EXAMPLE_DIR/requirements.txt"
  touch "$venv/.installed"
}

# Whether OUTPUT exists and is newer than every file under the INPUT paths.
up_to_date() {
  local output=$1
  shift
  [[ -e $output ]] && [[ -z $(find "$@" -newer "$output" -type f -print -quit) ]]
}

# `--tools-only` installs the toolchain and stops; otherwise builds OUTPUT (default
# target/examples/NAME.wasm). The component is written beside OUTPUT and renamed into
# place, so a failed build never leaves a partial file behind.
main() {
  install_tools
  [[ ${1:-} == --tools-only ]] && return
  local output
  output=$(realpath -m "${1:-$EXAMPLES_TARGET/$EXAMPLE.wasm}")
  mkdir -p "$(dirname "$output")"
  if up_to_date "$output" "${BUILD_INPUTS[@]}" "$EXAMPLE_DIR/build.sh" "${BASH_SOURCE[0]}"; then
    log "${output#"$ROOT_DIR"/} is up to date"
    return
  fi
  log "building ${output#"$ROOT_DIR"/}"
  build "$output.partial"
  mv "$output.partial" "$output"
}

# For a Rust example: the workspace crate named like the example's folder, built with
# plain cargo for wasm32-wasip2 into its own target directory under target/examples/.
# A script sets BUILD_INPUTS (adding what else the crate reads), then calls
# `rust_example "$@"`.
RUST_TARGET=wasm32-wasip2

install_rust_tools() {
  require cargo "Rust (rustup)"
  rustup target list --installed | grep -qx "$RUST_TARGET" && return
  log "adding the $RUST_TARGET target"
  rustup target add "$RUST_TARGET"
}

build_rust_crate() {
  local cargo_target=$EXAMPLES_TARGET/$EXAMPLE
  cargo build --quiet --release --locked --manifest-path "$ROOT_DIR/Cargo.toml" \
    --package "$EXAMPLE" --target "$RUST_TARGET" --target-dir "$cargo_target"
  cp "$cargo_target/$RUST_TARGET/release/${EXAMPLE//-/_}.wasm" "$1"
}

rust_example() {
  install_tools() { install_rust_tools; }
  build() { build_rust_crate "$1"; }
  BUILD_INPUTS+=("$EXAMPLE_DIR/src" "$EXAMPLE_DIR/Cargo.toml" "$ROOT_DIR/Cargo.lock")
  main "$@"
}
