#!/usr/bin/env bash
# Run every test of the workspace. Release profile: the CLI and the tests then share one build
# of Burn, and Burn's CPU kernels are far too slow unoptimised.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests that read the data pack look at ATD_DATA, else ../shared/data beside the checkout.
if [ -z "${ATD_DATA:-}" ] && [ -d ../shared/data ]; then
  ATD_DATA="$(cd ../shared/data && pwd)"
  export ATD_DATA
fi
echo "data pack: ${ATD_DATA:-not found (data tests will be skipped)}"
cargo test --release --workspace "$@"
# atd-core is shared with the browser: it must keep building for wasm32.
cargo build --release -p atd-core --target wasm32-unknown-unknown
