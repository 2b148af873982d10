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
  install_requirements "$VENV" "componentize-py"
}

build() {
  "$VENV/bin/componentize-py" --quiet --wit-path "$ROOT_DIR/wit" --world hello \
    componentize --python-path "$EXAMPLE_DIR" app --output "$1"
}

main "$@"
