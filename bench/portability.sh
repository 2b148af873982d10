#!/usr/bin/env bash
# Serves the same component under `wasmtime serve` and under wasi-host and checks that a
# few requests get the same answers (status, content-type, body): the promise that a
# guest built for this host runs unchanged on other wasi:http hosts.
#
# Usage: bench/portability.sh [GUEST...]   (hello, python; default: hello)
# Exits non-zero when any answer differs. Not part of the test suite: it needs
# wasmtime-cli, which it installs (a long compile the first time).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

HOSTS=(wasmtime wasi-host)
REQUESTS=("GET /" "GET /nope" "HEAD /")

# Prints `STATUS CONTENT-TYPE 'BODY'` for one request to the current server, the body
# quoted so that whitespace differences show.
answer() {
  local method=$1 path=$2 body
  body=$(mktemp)
  local -a how=(-X "$method")
  # A HEAD response has no body; `--head` tells curl not to wait for one.
  [[ $method == HEAD ]] && how=(--head)
  local head
  head=$(curl -sS "${how[@]}" -o "$body" -w '%{http_code} %{content_type}' \
    "http://127.0.0.1:$SERVER_PORT$path")
  [[ $method == HEAD ]] && : >"$body"
  local text
  text=$(cat "$body")
  printf '%s %s\n' "$head" "${text@Q}"
  rm -f "$body"
}

# Serves GUEST under each host and compares the answers; returns 1 on any difference.
check_guest() {
  local guest=$1 host request differ=0
  local -A answers=()
  for host in "${HOSTS[@]}"; do
    start_server "$host/$guest" wasm
    for request in "${REQUESTS[@]}"; do
      answers[$host $request]=$(answer "${request% *}" "${request#* }")
    done
    stop_server
  done
  printf '\n%s\n' "$guest"
  for request in "${REQUESTS[@]}"; do
    local expected=${answers[${HOSTS[0]} $request]} verdict=same
    for host in "${HOSTS[@]:1}"; do
      if [[ ${answers[$host $request]} != "$expected" ]]; then
        verdict=DIFFERENT
        differ=1
      fi
    done
    if [[ $verdict == same ]]; then
      printf '  %-10s same on every host: %s\n' "$request" "$expected"
    else
      printf '  %-10s DIFFERENT\n' "$request"
      for host in "${HOSTS[@]}"; do printf '    %-10s %s\n' "$host" "${answers[$host $request]}"; done
    fi
  done
  return "$differ"
}

main() {
  local guests=("${@:-hello}") guest failed=0
  start_wasmtime_install
  build_rust
  if [[ " ${guests[*]} " == *" python "* ]]; then
    install_python_tools
    build_python_guest
  fi
  finish_wasmtime_install
  for guest in "${guests[@]}"; do
    [[ -f $BUILD_DIR/$guest.wasm ]] || die "unknown guest: $guest (hello or python)"
    check_guest "$guest" || failed=1
  done
  if ((failed)); then
    log "some answers differ between the hosts"
    exit 1
  fi
  log "every answer is the same on every host"
}

main "$@"
