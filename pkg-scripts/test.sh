#!/usr/bin/env bash
# Every test: the Rust workspace (Burn models and training, the WGSL engine on the machine's GPU
# or lavapipe, Burn-vs-engine parity), the wasm package build, the page end to end in headless
# Chromium (WebGPU on SwiftShader, then the CPU fallback), and a fuzz smoke of every parser.
# Release profile: the CLI and the tests share one build of Burn, and Burn's CPU kernels are far
# too slow unoptimised.
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh machine gets what the tests need first (skipped in seconds when all is there).
pkg-scripts/setup.sh
# Tests that read the data pack look at ATD_DATA, else ../shared/data beside the checkout.
if [ -z "${ATD_DATA:-}" ] && [ -d ../shared/data ]; then
  ATD_DATA="$(cd ../shared/data && pwd)"
  export ATD_DATA
fi
echo "data pack: ${ATD_DATA:-not found (data tests will be skipped)}"
# Mesa prints an error without a runtime dir.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
# The GPU tests on Vulkan (lavapipe where there is no GPU), not on wgpu's much slower GL fallback.
if ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}; fi
echo "wgpu backend for the GPU tests: ${WGPU_BACKEND:-the default}"
# Formatting first: it takes a second and names the file (rustfmt.toml holds the style).
cargo fmt --all -- --check
# Lints (workspace Cargo.toml) on every target; release profile, sharing the test build's dependencies.
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --release --workspace "$@"
# The browser: build the wasm package (atd-core, atd-gpu and atd-wasm for wasm32), then the page.
pkg-scripts/build-web.sh
# The engine inside headless Chromium (wasm-bindgen-test + chromedriver; crates/atd-wasm/webdriver.json).
CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver)} cargo test --release --target wasm32-unknown-unknown -p atd-wasm
node tests/browser/e2e.mjs
# Every parser under libFuzzer for a few seconds from its committed seeds (fuzz/; nightly).
pkg-scripts/fuzz.sh smoke
