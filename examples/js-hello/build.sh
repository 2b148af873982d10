#!/usr/bin/env bash
# Builds the JavaScript hello (app.js) into a wasi:http/proxy component with
# componentize-js (StarlingMonkey, the SpiderMonkey-based engine jco uses).
#
# Usage: examples/js-hello/build.sh [OUTPUT]   (default: target/examples/js-hello.wasm)
#        examples/js-hello/build.sh --tools-only
#
# componentize-js and jco, pinned in package.json and package-lock.json, are installed
# with `npm ci` into node_modules/ here. package.json also pins
# @bytecodealliance/preview2-shim 0.25.0: componentize-js 0.22 imports it without
# declaring it, and reads the WIT through its file system, which 0.26 no longer opens
# by default. The component is built against the vendored wit/ (world `hello`). An
# OUTPUT newer than its inputs is left as it is.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"

# npm ci writes this copy of the lock file last, once every package is in place.
TOOLS_STAMP=$EXAMPLE_DIR/node_modules/.package-lock.json
BUILD_INPUTS=("$EXAMPLE_DIR/app.js" "$ROOT_DIR/wit" "$TOOLS_STAMP")

install_tools() {
  [[ -f $TOOLS_STAMP && $TOOLS_STAMP -nt $EXAMPLE_DIR/package-lock.json ]] && return
  require node "Node.js 20 or later"
  require npm "npm"
  log "installing componentize-js with npm ci"
  (cd "$EXAMPLE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
}

build() {
  "$EXAMPLE_DIR/node_modules/.bin/componentize-js" "$EXAMPLE_DIR/app.js" \
    --wit "$ROOT_DIR/wit" --world-name hello --out "$1"
}

main "$@"
