#!/usr/bin/env bash
# Benchmarks wasi-host against `wasmtime serve`, a native hyper hello and Flask: builds
# everything, starts each server in turn on 127.0.0.1, drives it with wrk, and prints a
# Markdown table of medians and ratios. Raw numbers go to bench/results/.
#
# Usage: bench/run.sh [SERVER...]     (default: all; e.g. `bench/run.sh wasi-host/hello`)
# Servers: native/hello flask/hello wasmtime/hello wasi-host/hello
#          wasi-host-workers/hello wasmtime/python wasi-host/python
#          wasi-host-workers/python wasmtime/hello3 wasi-host/hello3
#          wasi-host-workers/hello3 wasmtime-reuse/hello wasi-host-reuse/hello
#          wasi-host-workers-reuse/hello wasi-host/spinpy wasi-host-workers/spinpy
#          wasi-host/counter wasi-host-workers/counter
#          (the counter: examples/rust-kv-counter counting in a redis-server the run starts)
# Knobs (env): RUNS=3 rounds, DURATION=5s per wrk run, WARMUP=1s, COLD_STARTS=5,
# DROP_CACHES=1 to time cold starts with an empty page cache (see settle_page_cache).
#
# Not part of the test suite: it needs root for `apt-get install wrk` the first time,
# and its numbers depend on the machine.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
COLD_STARTS=${COLD_STARTS:-5}
ALL_SERVERS=(native/hello flask/hello wasmtime/hello wasi-host/hello wasi-host-workers/hello
  wasmtime/python wasi-host/python wasi-host-workers/python
  wasmtime/hello3 wasi-host/hello3 wasi-host-workers/hello3
  wasmtime-reuse/hello wasi-host-reuse/hello wasi-host-workers-reuse/hello
  wasi-host/spinpy wasi-host-workers/spinpy
  wasi-host/counter wasi-host-workers/counter)
if (($#)); then SERVERS=("$@"); else SERVERS=("${ALL_SERVERS[@]}"); fi
RESULTS_DIR=$BENCH_DIR/results
RAW=$RESULTS_DIR/$(date -u +%Y%m%dT%H%M%SZ).tsv

# Appends one measurement: round, server, metric, value.
record() {
  printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RAW"
}

# The form a server is load-tested in: precompiled for the wasm hosts when they can
# (how one deploys; the generated code is the same either way, and the peak RSS is not
# inflated by the compiler), the compiling start otherwise.
load_form() {
  case ${1%/*} in
    native | flask) echo native ;;
    *) if server_supports "$1" cwasm; then echo cwasm; else echo wasm; fi ;;
  esac
}

# Runs wrk against the current server with CONNS connections and records requests/s,
# p50 and p99 (ms), and the responses that were not 2xx or that failed.
measure_load() {
  local server=$1 conns=$2 out
  out=$(wrk -t1 -c"$conns" -d"$DURATION" --latency "http://127.0.0.1:$SERVER_PORT/")
  # wrk prints latencies with a unit (us, ms, s); convert them to milliseconds.
  awk -v c="$conns" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000
      return v
    }
    /^Requests\/sec:/ { print "rps_c" c, $2 }
    $1 == "50%" { print "p50_c" c "_ms", ms($2) }
    $1 == "99%" { print "p99_c" c "_ms", ms($2) }
    /Non-2xx or 3xx responses:/ { print "non2xx_c" c, $NF }
    /Socket errors:/ { gsub(/,/, ""); print "socket_errors_c" c, $4 + $6 + $8 + $10 }
  ' <<<"$out" | while read -r metric value; do record "$server" "$metric" "$value"; done
}

# Sets every process of the current server (the gunicorn master and its workers, say)
# back to its current RSS as its peak, so the next reading is the peak under load.
reset_peak_rss() {
  local pid
  for pid in $SERVER_PID $(pgrep -P "$SERVER_PID" || true); do
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
  done
}

# Peak RSS (VmHWM) in KiB, summed over the server's process and its children.
peak_rss_kib() {
  local pid total=0 kib
  for pid in $SERVER_PID $(pgrep -P "$SERVER_PID" || true); do
    kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# One server, one round: a warm-up, then 1 connection, then 80 with the peak RSS.
load_round() {
  local server=$1
  log "round $ROUND: $server ($(load_form "$server"))"
  start_server "$server" "$(load_form "$server")"
  wrk -t1 -c80 -d"$WARMUP" "http://127.0.0.1:$SERVER_PORT/" >/dev/null
  measure_load "$server" 1
  reset_peak_rss
  measure_load "$server" 80
  record "$server" rss_c80_kib "$(peak_rss_kib)"
  stop_server
}

# Puts the files a start reads into a known state first: by default in the page cache
# (the host's own start-up cost, steady from start to start), with DROP_CACHES=1 out of
# it (closer to a fresh instance pulling its image; root only, and it slows everything
# else on the machine for a while).
settle_page_cache() {
  local arg
  if [[ ${DROP_CACHES:-0} == 1 ]]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
  else
    for arg in "${SERVER_CMD[@]}"; do
      if [[ -f $arg ]]; then cat "$arg" >/dev/null; fi
    done
  fi
}

# Milliseconds from spawning SERVER in FORM to its first 200 on `/`.
cold_start() {
  local server=$1 form=$2 start end us
  prepare_server "$server" "$form"
  settle_page_cache
  start=$EPOCHREALTIME
  launch_server
  wait_until_ready
  end=$EPOCHREALTIME
  stop_server
  us=$((${end/./} - ${start/./}))
  record "$server" "cold_${form}_ms" "$((us / 1000)).$(printf '%03d' $((us % 1000)))"
}

# The cold starts, interleaved across servers so that a noisy minute on the machine
# spreads over all of them instead of spoiling one.
cold_starts() {
  local server form
  for ((ROUND = 1; ROUND <= COLD_STARTS; ROUND++)); do
    log "cold starts, pass $ROUND of $COLD_STARTS"
    for server in "${SERVERS[@]}"; do
      for form in native cwasm wasm; do
        if server_supports "$server" "$form"; then cold_start "$server" "$form"; fi
      done
    done
  done
}

# What the table needs besides the numbers: the machine and the versions measured.
write_header() {
  mkdir -p "$RESULTS_DIR"
  {
    printf '# date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '# machine\t%s cores, %s, Linux %s\n' "$(nproc)" \
      "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$(uname -r)"
    printf '# load average at start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '# wasi-host\t%s\n' "$(git -C "$ROOT_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
    printf '# wasmtime\t%s\n' "$("$WASMTIME" --version)"
    printf '# settings\tDURATION=%s WARMUP=%s RUNS=%s COLD_STARTS=%s DROP_CACHES=%s\n' \
      "$DURATION" "$WARMUP" "$RUNS" "$COLD_STARTS" "${DROP_CACHES:-0}"
    printf 'round\tserver\tmetric\tvalue\n'
  } >"$RAW"
}

main() {
  local server
  for server in "${SERVERS[@]}"; do
    [[ " ${ALL_SERVERS[*]} " == *" $server "* ]] || die "unknown server: $server (one of: ${ALL_SERVERS[*]})"
  done

  install_wrk
  install_python_tools
  build_rust
  build_example_guests
  precompile hello
  precompile python
  precompile hello3
  precompile spinpy
  precompile counter
  if [[ " ${SERVERS[*]} " == *"/counter "* ]]; then start_redis; fi
  wasi_host_precompiles || log "this wasi-host has no \`compile\`: its precompiled rows are skipped"

  write_header
  log "writing raw results to ${RAW#"$ROOT_DIR"/}"
  for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
    for server in "${SERVERS[@]}"; do
      load_round "$server"
    done
  done
  cold_starts

  python3 "$BENCH_DIR/summarize.py" "$RAW" | tee "${RAW%.tsv}.md"
}

main
