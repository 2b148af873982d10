#!/usr/bin/env bash
# Builds the Spin 4 Python app (app.py) into a component with the Python Spin SDK:
# world `spin:up/http-trigger@4.1.0`, which exports `wasi:http/handler@0.3.0` and
# imports Spin's platform world (WASI 0.2.6, 0.3.0-rc-2026-03-15 and 0.3.0, and
# Spin's own interfaces).
#
# Usage: examples/spin-python/build.sh [OUTPUT]   (default: target/examples/spin-python.wasm)
#        examples/spin-python/build.sh --tools-only
#
# componentize-py and spin-sdk, pinned in requirements.txt, go into a venv under
# target/examples/spin-python/. The WIT comes with spin-sdk (its componentize-py.toml
# names it), so nothing but those two packages is downloaded. componentize-py finds
# spin-sdk through the `python3` on PATH, hence the venv's bin/ first on PATH. An
# OUTPUT newer than its inputs is left as it is.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"

VENV=$EXAMPLES_TARGET/spin-python/venv
TOOLS_STAMP=$VENV/.installed
BUILD_INPUTS=("$EXAMPLE_DIR/app.py" "$TOOLS_STAMP")

install_tools() {
  install_requirements "$VENV" "componentize-py and spin-sdk"
}

build() {
  PATH="$VENV/bin:$PATH" "$VENV/bin/componentize-py" --quiet --world spin:up/http-trigger@4.1.0 \
    componentize --python-path "$EXAMPLE_DIR" app --output "$1"
}

main "$@"
