#!/usr/bin/env bash
# Builds the Python hello (app.py) into a wasi:http/proxy component with componentize-py.
#
# Usage: examples/python-hello/build.sh [OUTPUT]   (default: target/examples/python-hello.wasm)
#        examples/python-hello/build.sh --tools-only
#
# componentize-py, pinned in requirements.txt, goes into a venv under
# target/examples/python-hello/. The bindings are generated from the vendored wit/
# (world `hello`): nothing but the tool itself is downloaded. An OUTPUT newer than its
# inputs is left as it is.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"

VENV=$EXAMPLES_TARGET/python-hello/venv
TOOLS_STAMP=$VENV/.installed
BUILD_INPUTS=("$EXAMPLE_DIR/app.py" "$ROOT_DIR/wit" "$TOOLS_STAMP")

install_tools() {
  [[ -f $TOOLS_STAMP && $TOOLS_STAMP -nt $EXAMPLE_DIR/requirements.txt ]] && return
  require python3 "Python 3 with its venv module"
  log "installing componentize-py into ${VENV#"$ROOT_DIR"/}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$EXAMPLE_DIR/requirements.txt"
  touch "$TOOLS_STAMP"
}

build() {
  "$VENV/bin/componentize-py" --quiet --wit-path "$ROOT_DIR/wit" --world hello \
    componentize --python-path "$EXAMPLE_DIR" app --output "$1"
}

main "$@"
