#!/usr/bin/env bash
# The demo on the shipped weights: build the wasm package, then serve the page on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg-scripts/build-web.sh
exec pkg-scripts/serve.sh
