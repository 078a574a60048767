#!/usr/bin/env bash
# Install what the tests need on a fresh Debian/Ubuntu machine, skipping whatever is already
# there (so a second run takes seconds): Mesa's software Vulkan for the native GPU tests, DejaVu
# for the report figures, Chromium and its driver for the browser tests, the wasm32 target,
# wasm-bindgen-cli at the version Cargo.lock pins, the nightly toolchain and cargo-fuzz for the
# fuzz smoke, playwright-core. Fails at once, naming what is
# missing, when it cannot install it (no apt, no root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo is missing: install the Rust toolchain (https://rustup.rs)"; exit 1; }

missing=""
for p in mesa-vulkan-drivers libvulkan1 fonts-dejavu-core; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
for c in chromium:chromium chromedriver:chromium-driver python3:python3 node:nodejs npm:npm; do
  command -v "${c%%:*}" >/dev/null || missing="$missing ${c##*:}"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || { echo "setup: missing$missing, and this machine has no apt-get: install them by hand"; exit 1; }
  if [ "$(id -u)" = 0 ]; then
    SUDO=""
  elif sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "setup: missing$missing; installing needs root: run 'sudo apt-get install$missing' and retry"
    exit 1
  fi
  echo "setup: installing$missing"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
fi

cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qF "$WBG_VERSION"; then
  # Not --locked: the CLI's lockfile pins a crate version this registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$WBG_VERSION"
fi
# The fuzz smoke: libFuzzer through cargo-fuzz, which needs the nightly toolchain.
rustup toolchain list 2>/dev/null | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
echo "setup: everything the tests need is installed"
