#!/usr/bin/env bash
# Installs what the test suite needs, in tiers. Serving needs none of it: scripts/serve.sh
# builds with nothing but the wasm32-wasip2 target.
#
#   scripts/setup.sh [--plan] [TIER...]   (default: every tier, as scripts/test.sh runs it)
#
#   core        Rust targets, rustfmt, clippy, cargo-component and wasmtime-cli (for the
#               portability tests and the benchmarks' anchor): every test binary
#   examples    Python 3 with venv and Node.js with npm (apt-get), then the examples'
#               pinned componentize-py (into target/) and componentize-js (npm ci)
#   registry    docker-registry (apt-get) and wkg (cargo install): the OCI registry tests
#   kv          redis-server (apt-get): the key-value tests, against a real Redis
#   containers  podman, runc, runsc (gVisor) and musl-tools (apt-get), the musl Rust target
#               and podman's ulimits setting: the container tests
#
# It first prints what it is about to install and roughly how long that takes on two
# cores (`--plan` prints only that). A step already done is skipped, so running it again
# is quick. A tier that cannot be installed here (no apt-get, say) is reported with what
# to install by hand; the other tiers still install, the script exits non-zero, and that
# tier's tests fail until it is installed.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "$0")/lib.sh"

WKG_VERSION=0.16.1
WASMTIME_VERSION=48.0.8
TIERS=(core examples registry kv containers)
MUSL_TARGET=$(uname -m)-unknown-linux-musl
CONTAINERS_CONF=/etc/containers/containers.conf

# Every step, one a line: TIER|MINUTES|WHAT|CHECK|INSTALL. MINUTES is roughly what the
# step takes on two cores when it has to run; CHECK and INSTALL are functions below.
STEPS="
core|1|Rust targets wasm32-wasip2 and wasm32-wasip1, rustfmt and clippy (rustup)|rust_parts_present|add_rust_parts
core|5|cargo-component $CARGO_COMPONENT_VERSION (cargo install)|cargo_component_present|install_cargo_component
core|15|wasmtime-cli $WASMTIME_VERSION (cargo install)|wasmtime_present|install_wasmtime
examples|2|python3, python3-venv, nodejs and npm (apt-get)|example_runtimes_present|install_example_runtimes
examples|3|componentize-py (pip, into target/examples) and componentize-js (npm ci)|example_tools_present|install_example_tools
registry|1|docker-registry (apt-get)|registry_server_present|install_registry_server
registry|7|wkg $WKG_VERSION (cargo install)|wkg_present|install_wkg
kv|1|redis-server (apt-get)|redis_server_present|install_redis_server
containers|1|the $MUSL_TARGET Rust target (rustup)|musl_target_present|add_musl_target
containers|2|podman, runc, runsc and musl-tools (apt-get)|container_tools_present|install_container_tools
containers|0|default_ulimits = [] in $CONTAINERS_CONF|ulimits_setting_present|add_ulimits_setting
"

rust_parts_present() {
  local components
  components=$(rustup component list --installed 2>/dev/null) &&
    targets_installed wasm32-wasip2 wasm32-wasip1 &&
    grep -q '^rustfmt' <<<"$components" && grep -q '^clippy' <<<"$components"
}
add_rust_parts() {
  add_rust_targets wasm32-wasip2 wasm32-wasip1
  rustup component add rustfmt clippy
}

cargo_component_present() { has_version "$CARGO_COMPONENT_VERSION" cargo component; }

# wasmtime-cli, the release the host embeds: the portability tests serve each hello with
# `wasmtime serve` too and compare the answers.
# Only the subcommands and WASI parts those use (and `compile`, for bench/run.sh to
# precompile its anchor as it does the host): a third of the default build's time.
wasmtime_present() {
  has_version "$WASMTIME_VERSION" wasmtime && wasmtime compile --help >/dev/null 2>&1
}
install_wasmtime() {
  cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --no-default-features \
    --features serve,run,compile,cranelift,component-model,component-model-async,pooling-allocator,parallel-compilation,wasi-config,wasi-keyvalue,clap/default
}

example_runtimes_present() {
  python3 -c 'import ensurepip, venv' 2>/dev/null && command -v npm >/dev/null
}
install_example_runtimes() {
  apt_install "Python 3 with its venv module, Node.js 20 or later and npm" \
    python3 python3-venv nodejs npm
}

# The examples' build scripts pin their tools and skip what is installed already.
example_tools_present() {
  [ -x "$ROOT_DIR/target/examples/python-hello/venv/bin/componentize-py" ] &&
    [ -x "$ROOT_DIR/examples/js-hello/node_modules/.bin/componentize-js" ]
}
install_example_tools() {
  "$ROOT_DIR/examples/python-hello/build.sh" --tools-only
  "$ROOT_DIR/examples/js-hello/build.sh" --tools-only
}

# The registry the OCI tests start and pull from.
registry_server_present() { command -v docker-registry >/dev/null; }
install_registry_server() {
  apt_install "the CNCF distribution registry, as \`docker-registry\` on PATH," docker-registry
}

# wkg pushes components to that registry, as users push them.
wkg_present() { has_version "$WKG_VERSION" wkg; }
install_wkg() { cargo_install wkg "$WKG_VERSION" wkg; }

# The Redis the key-value tests start, stop and restart, as guests' shared store.
redis_server_present() { command -v redis-server >/dev/null; }
install_redis_server() {
  apt_install "Redis 6 or later, as \`redis-server\` on PATH," redis-server
}

# The static host binary the image ships.
musl_target_present() { targets_installed "$MUSL_TARGET"; }
add_musl_target() { add_rust_targets "$MUSL_TARGET"; }

# podman builds and runs the image, under runc (podman's own default may be crun) and
# under gVisor (runsc, the sandbox of Cloud Run's first generation); musl-gcc compiles
# the C parts of the static host.
container_tools_present() {
  command -v podman >/dev/null && command -v runc >/dev/null &&
    command -v runsc >/dev/null && command -v musl-gcc >/dev/null
}
install_container_tools() {
  apt_install "podman, runc, runsc (gVisor) and musl-gcc" podman runc runsc musl-tools
}

# podman raises every container's open-file limit past what a machine with a lower hard
# limit allows, and `podman run` then fails ("error setting rlimit type 7"): containers
# inherit the limits instead.
ulimits_setting_present() {
  grep -qs '^[[:space:]]*default_ulimits[[:space:]]*=' "$CONTAINERS_CONF"
}
add_ulimits_setting() {
  as_root mkdir -p "$(dirname "$CONTAINERS_CONF")"
  if grep -qs '^\[containers\]' "$CONTAINERS_CONF"; then
    as_root sed -i '/^\[containers\]/a default_ulimits = []' "$CONTAINERS_CONF"
  else
    printf '[containers]\ndefault_ulimits = []\n' | as_root tee -a "$CONTAINERS_CONF" >/dev/null
  fi
}

# Whether every rustup TARGET is installed.
targets_installed() {
  local installed
  installed=$(rustup target list --installed 2>/dev/null) || return 1
  for target in "$@"; do
    grep -qx "$target" <<<"$installed" || return 1
  done
}

# Runs a command as root: directly when root already, else with sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    command -v sudo >/dev/null || die "this step needs root, and sudo is not installed"
    sudo "$@"
  fi
}

# apt_install WHAT PACKAGE...: installs Debian packages, or fails saying to install WHAT
# by hand where there is no apt-get.
apt_install() {
  local what=$1
  shift
  command -v apt-get >/dev/null ||
    die "no apt-get on this machine: install $what with its own package manager (the Debian packages are $*)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# Prints the steps of the chosen tiers that still have to run, with their rough time.
print_plan() {
  local minutes=0 tier step_minutes what check install
  # fd 3, so that no check or install step reads the list as its input.
  while IFS='|' read -r -u 3 tier step_minutes what check install; do
    if [ -z "$tier" ] || ! chosen "$tier" || "$check"; then continue; fi
    if [ "$step_minutes" -eq 0 ]; then
      say "will install for the $tier tests: $what, seconds"
    else
      say "will install for the $tier tests: $what, ~$step_minutes min"
    fi
    minutes=$((minutes + step_minutes))
  done 3<<<"$STEPS"
  if [ "$minutes" -eq 0 ]; then
    say "everything ${CHOSEN[*]} needs is installed"
  else
    say "about $minutes minute$([ "$minutes" -eq 1 ] || echo s) on two cores"
  fi
}

chosen() {
  local tier
  for tier in "${CHOSEN[@]}"; do [ "$tier" = "$1" ] && return 0; done
  return 1
}

# Runs STEP (WHAT|CHECK|INSTALL) unless its check passes, and checks it after.
install_step() {
  local what=$1 check=$2 install=$3
  "$check" && return
  say "installing $what"
  "$install"
  "$check" || die "$what: still missing after installing it"
}

plan_only=false
if [ "${1:-}" = --plan ]; then
  plan_only=true
  shift
fi
CHOSEN=("${@:-${TIERS[@]}}")
for tier in "${CHOSEN[@]}"; do
  [[ " ${TIERS[*]} " == *" $tier "* ]] || die "unknown tier \`$tier\`: choose from ${TIERS[*]}"
done

print_plan
$plan_only && exit
failed=()
while IFS='|' read -r -u 3 tier _ what check install; do
  if [ -z "$tier" ] || ! chosen "$tier"; then continue; fi
  # A subshell, so that `set -e` stops this step at its first failure, not the others.
  set +e
  (
    set -e
    install_step "$what" "$check" "$install"
  )
  status=$?
  set -e
  [ "$status" -eq 0 ] || failed+=("$tier: $what")
done 3<<<"$STEPS"
if [ ${#failed[@]} -gt 0 ]; then
  say "these steps failed (see above); the tests of their tier fail until they are done:"
  printf '  %s\n' "${failed[@]}" >&2
  say "once the cause is fixed, scripts/setup.sh TIER runs a tier's steps again"
  exit 1
fi
