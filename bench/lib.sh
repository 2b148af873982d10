# shellcheck shell=bash
# Used by bench/run.sh: the one-time installs, the builds, and starting, probing and
# stopping one server on loopback. Source it; it only defines paths and functions.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(dirname "$BENCH_DIR")
# A target directory of our own, so a benchmark build never waits for cargo's build
# lock while the workspace is being built by someone else.
export CARGO_TARGET_DIR=$ROOT_DIR/target/bench
BUILD_DIR=$BENCH_DIR/build
VENV_DIR=$BENCH_DIR/.venv
WASMTIME_VERSION=48.0.8
WASMTIME=${CARGO_HOME:-$HOME/.cargo}/bin/wasmtime
WASI_HOST=$CARGO_TARGET_DIR/release/wasi-host
NATIVE_HELLO=$CARGO_TARGET_DIR/release/native-hello
# wasi-host runs as the image runs it: mimalloc otherwise commits its first arena eagerly,
# in transparent huge pages the kernel zeroes 2 MiB at a time, 3-9 ms of a cold start.
export MIMALLOC_ARENA_EAGER_COMMIT=0
# Every server listens on a fresh port from here up, on 127.0.0.1 only.
NEXT_PORT=${BENCH_PORT_BASE:-18100}

# wasmtime formats an error on each request's normal path; with backtraces enabled each
# one also captures a backtrace, a few percent of CPU. No server under test gets them.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

# The readiness probe writes to sockets from this shell: a server that resets a
# connection must not kill the harness with SIGPIPE.
trap '' PIPE

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$BUILD_DIR"

# ---------------------------------------------------------------------------------------
# One-time installs, each skipped when already done.

install_wrk() {
  command -v wrk >/dev/null && return
  log "installing wrk"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
}

wasmtime_installed() {
  "$WASMTIME" --version 2>/dev/null | grep -Eq "^wasmtime ${WASMTIME_VERSION//./\\.}( |$)" &&
    "$WASMTIME" compile --help >/dev/null 2>&1
}

# Flask and gunicorn, pinned in requirements.txt, in a git-ignored venv.
install_python_tools() {
  local stamp=$VENV_DIR/.requirements-installed
  [[ -f $stamp && $stamp -nt $BENCH_DIR/requirements.txt ]] && return
  log "installing the Python tools into bench/.venv"
  python3 -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install --quiet --disable-pip-version-check -r "$BENCH_DIR/requirements.txt"
  touch "$stamp"
}

# ---------------------------------------------------------------------------------------
# Builds. Cargo and the Python guest's script skip what is up to date; the precompiled
# files are rebuilt only when an input is newer than the output.

# Whether OUTPUT is missing or older than any file under the INPUT paths.
stale() {
  local output=$1
  shift
  [[ ! -e $output ]] || [[ -n $(find "$@" -newer "$output" -type f -print -quit) ]]
}

build_rust() {
  log "building wasi-host, the hello guest and native-hello (release)"
  # The project's setup: the wasm targets the guest builds need, wasmtime-cli (the
  # anchor) and the examples' toolchains.
  "$ROOT_DIR/scripts/setup.sh" core examples >"$BUILD_DIR/setup.log" 2>&1 ||
    die "scripts/setup.sh core examples failed; see bench/build/setup.log"
  wasmtime_installed || die "$WASMTIME is not wasmtime $WASMTIME_VERSION with \`compile\`"
  (cd "$ROOT_DIR" && cargo build --quiet --release -p wasi-host)
  (cd "$ROOT_DIR" && cargo build --quiet --release -p hello -p rust-kv-counter --target wasm32-wasip2)
  cargo build --quiet --release --manifest-path "$BENCH_DIR/native-hello/Cargo.toml"
  # Keeping cargo's timestamp keeps the precompiled files fresh while the guest is.
  cp -p "$CARGO_TARGET_DIR/wasm32-wasip2/release/hello.wasm" "$BUILD_DIR/hello.wasm"
  cp -p "$CARGO_TARGET_DIR/wasm32-wasip2/release/rust_kv_counter.wasm" "$BUILD_DIR/counter.wasm"
}

# The other guests are examples, each built by its own script (which installs its
# toolchain and skips the build when the component is up to date): the Python hello
# (componentize-py), the Rust hello as a WASI 0.3 component, and the Spin 4 Python app.
build_example_guests() {
  "$ROOT_DIR/examples/python-hello/build.sh" "$BUILD_DIR/python.wasm"
  "$ROOT_DIR/examples/rust-p3-hello/build.sh" "$BUILD_DIR/hello3.wasm"
  "$ROOT_DIR/examples/spin-python/build.sh" "$BUILD_DIR/spinpy.wasm"
}

# The Spin 4 Python app as wasi-host serves it: a manifest of its own beside the file
# FORM names (build/spinpy.wasm, or build/wasi-host/spinpy.cwasm), whose variables all
# have defaults, so no environment is needed.
spin_manifest() {
  local form=$1 dir=$BUILD_DIR/spin-$1 source
  if [[ $form == wasm ]]; then source=../spinpy.wasm; else source=../wasi-host/spinpy.cwasm; fi
  [[ -f $BUILD_DIR/${source#../} ]] || return 0
  mkdir -p "$dir"
  cat >"$dir/spin.toml" <<TOML
spin_manifest_version = 2
[application]
name = "bench-spin-python"
[variables]
greeting = { default = "Hello, World!" }
upstream_url = { default = "http://127.0.0.1:9" }
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "$source"
[component.app.variables]
greeting = "{{ greeting }}"
upstream_url = "{{ upstream_url }}"
TOML
  echo "$dir/spin.toml"
}

# Whether this build of wasi-host has `compile` (and so serves `.cwasm` files).
wasi_host_precompiles() {
  local help
  help=$("$WASI_HOST" --help)
  grep -qE '^ +compile ' <<<"$help"
}

# Writes each host's precompiled form of build/GUEST.wasm to build/HOST/GUEST.cwasm.
# They live in folders of their own: a `.cwasm` beside the `.wasm` is picked up by
# `wasi-host serve GUEST.wasm`, which would hide the compile we time.
precompile() {
  local guest=$1 wasm=$BUILD_DIR/$1.wasm
  mkdir -p "$BUILD_DIR/wasmtime" "$BUILD_DIR/wasi-host"
  # wasmtime serve cannot serve the Spin app (it imports Spin's platform).
  if [[ $guest != spinpy ]] && stale "$BUILD_DIR/wasmtime/$guest.cwasm" "$wasm" "$WASMTIME"; then
    log "precompiling $guest for wasmtime serve"
    "$WASMTIME" compile "$wasm" -o "$BUILD_DIR/wasmtime/$guest.cwasm"
  fi
  if wasi_host_precompiles && stale "$BUILD_DIR/wasi-host/$guest.cwasm" "$wasm" "$WASI_HOST"; then
    log "precompiling $guest for wasi-host"
    "$WASI_HOST" compile "$wasm" -o "$BUILD_DIR/wasi-host/$guest.cwasm"
  fi
}

# ---------------------------------------------------------------------------------------
# Servers. A server is KIND/GUEST: KIND is native, flask, wasmtime, wasi-host or
# wasi-host-workers (wasi-host with `--workers auto`: a process per core), and for the
# wasm hosts with `-reuse` after it, `--max-instance-reuse-count 128` (a WASI 0.2 guest's
# instance serves up to 128 requests in turn); GUEST is hello, hello3 (the hello as a
# WASI 0.3 component), python, spinpy (the Spin 4 Python app; wasi-host only) or
# counter (the visit counter over a Redis the run starts; wasi-host only).
# Native and flask serve their own hello. FORM says how a wasm host gets the guest:
# `wasm` (compiled at start, no cache) or `cwasm` (precompiled).

# The file that HOST serves GUEST from in FORM, or nothing when HOST cannot.
artifact() {
  local host=$1 guest=$2 form=$3
  if [[ $guest == spinpy ]]; then
    # A Spin application imports Spin's platform, which only wasi-host links.
    if [[ $host == wasi-host ]]; then spin_manifest "$form"; fi
  elif [[ $form == wasm ]]; then
    echo "$BUILD_DIR/$guest.wasm"
  elif [[ -f $BUILD_DIR/$host/$guest.cwasm ]]; then
    echo "$BUILD_DIR/$host/$guest.cwasm"
  fi
}

# Fills SERVER_CMD with the command line that serves SERVER in FORM on 127.0.0.1:PORT.
server_command() {
  local kind=${1%/*} guest=${1#*/} form=$2 port=$3 file reuse=()
  local addr=127.0.0.1:$port
  if [[ $kind == *-reuse ]]; then
    kind=${kind%-reuse}
    reuse=(--max-instance-reuse-count 128)
  fi
  case $kind in
    native) SERVER_CMD=("$NATIVE_HELLO" --addr "$addr") ;;
    flask)
      SERVER_CMD=("$VENV_DIR/bin/gunicorn" --workers 2 --bind "$addr"
        --chdir "$BENCH_DIR/flask" app:app)
      ;;
    wasmtime)
      file=$(artifact wasmtime "$guest" "$form")
      # `-S cli`: toolchain-built guests import wasi:cli besides the proxy world.
      # `-C cache=n`: a compiling start is timed without wasmtime's compilation cache.
      SERVER_CMD=("$WASMTIME" serve -S cli -C cache=n --addr "$addr" "${reuse[@]}")
      [[ $form == cwasm ]] && SERVER_CMD+=(--allow-precompiled)
      SERVER_CMD+=("$file")
      ;;
    wasi-host | wasi-host-workers)
      file=$(artifact wasi-host "$guest" "$form")
      SERVER_CMD=("$WASI_HOST" serve "$file" --addr "$addr" "${reuse[@]}")
      if [[ $kind == wasi-host-workers ]]; then SERVER_CMD+=(--workers auto); fi
      if [[ $guest == counter ]]; then
        SERVER_CMD+=(--kv-store "default=redis://127.0.0.1:$REDIS_PORT")
      fi
      ;;
    *) die "unknown server kind: $kind" ;;
  esac
}

# Whether SERVER can be started in FORM with what this build has.
server_supports() {
  local kind=${1%/*} guest=${1#*/} form=$2
  kind=${kind%-reuse}
  case $kind in
    native | flask) [[ $form == native ]] ;;
    *) [[ $form != native && -n $(artifact "${kind%-workers}" "$guest" "$form") ]] ;;
  esac
}

# Whether something already listens on 127.0.0.1:PORT.
port_in_use() {
  local fd
  { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  exec {fd}>&-
}

# Picks a fresh loopback port for SERVER in FORM and fills SERVER_CMD; launch_server
# then starts it. Two steps, so a cold start's clock starts after the preparation.
prepare_server() {
  # A port someone else listens on would answer the readiness probe for our server.
  while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
  SERVER_PORT=$NEXT_PORT
  NEXT_PORT=$((NEXT_PORT + 1))
  SERVER_LOG=$BUILD_DIR/server.log
  server_command "$1" "$2" "$SERVER_PORT"
}

# Starts SERVER_CMD; sets SERVER_PID. The server is a child of this shell, so
# stop_server can wait for it.
launch_server() {
  "${SERVER_CMD[@]}" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
}

# Starts SERVER in FORM and waits until it answers.
start_server() {
  prepare_server "$1" "$2"
  launch_server
  wait_until_ready
}

# SIGTERM, then SIGKILL if the server has not exited within 10 s.
stop_server() {
  local _
  [[ -n ${SERVER_PID:-} ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in {1..100}; do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# The Redis the counter's rounds count in, without persistence, on a port of its own;
# started once for the run when a counter server is measured.
REDIS_PID=
start_redis() {
  command -v redis-server >/dev/null || die "redis-server is not installed: scripts/setup.sh kv installs it"
  while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
  REDIS_PORT=$NEXT_PORT
  NEXT_PORT=$((NEXT_PORT + 1))
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$BUILD_DIR/redis.log" 2>&1 &
  REDIS_PID=$!
  local _
  for _ in {1..100}; do
    port_in_use "$REDIS_PORT" && return
    read -r -t 0.05 -u "$SLEEP_FD" _ || true
  done
  die "redis-server did not start; see bench/build/redis.log"
}

stop_redis() {
  [[ -n $REDIS_PID ]] || return 0
  kill -TERM "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}

# However the script ends (an error, Ctrl-C), no server is left listening.
trap 'stop_server; stop_redis' EXIT

# A file descriptor whose reads never see data: `read -t` on it is a sub-millisecond
# sleep without forking a `sleep` process.
exec {SLEEP_FD}<> <(:)

# Whether `GET PATH` on the server answers `200`. Bash's /dev/tcp opens the connection
# in this shell, so a tight probe loop forks nothing that competes with the server for
# the CPU while it starts.
answers_ok() {
  local port=$1 fd line
  { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' 1>&"$fd" 2>/dev/null
  IFS= read -r -t 10 line <&"$fd" || line=
  exec {fd}>&-
  [[ $line == "HTTP/1."[01]" 200 "* ]]
}

# Polls `/` every millisecond until it answers 200; fails (showing the server's log) if
# the server exits or takes longer than READY_TIMEOUT seconds (compiling the Python
# guest takes several seconds, more on a busy machine).
READY_TIMEOUT=180
wait_until_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  until answers_ok "$SERVER_PORT"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS > deadline)); then
      log "server did not answer 200 on / within ${READY_TIMEOUT}s: ${SERVER_CMD[*]}"
      cat "$SERVER_LOG" >&2
      stop_server
      return 1
    fi
    read -r -t 0.001 -u "$SLEEP_FD" || true
  done
}
