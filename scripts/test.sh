#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests, the deploy
# manifests' tests and the container tests. Installs every tier of scripts/setup.sh
# first, saying what and roughly how long; the integration tests build every guest
# themselves and run the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# A tier that cannot be installed here still leaves the rest worth running: its own tests
# fail, saying what is missing, and so does this script.
setup=ok
scripts/setup.sh || setup=incomplete
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test -p wasi-host
if [ "$setup" != ok ]; then
  echo "test.sh: scripts/setup.sh could not install every tier (see its output above)" >&2
  exit 1
fi
