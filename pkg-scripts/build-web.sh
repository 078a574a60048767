#!/usr/bin/env bash
# Build the browser demo: the atd-wasm package into web/pkg/ (cargo + wasm-bindgen-cli at the
# version Cargo.lock pins), and, when the data pack is here (ATD_DATA, else ../shared/data), a
# few CIFAR-10 test images as PNGs in web/samples/cifar/ (git-ignored: datasets are never committed).
# Then the site to publish, in SITE (default target/site): the page, its scripts, the wasm
# package, the models and the samples, with every URL relative (it works from any host and any
# sub-path) and a version (a digest of the files) on every URL the page loads, so browsers never
# mix a new release with cached files of an old one. Copy that folder to any static host.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null && ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
WBG_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qF "$WBG_VERSION"; then
  echo "installing wasm-bindgen-cli $WBG_VERSION (a few minutes, once)"
  # Not --locked: the CLI's lockfile pins a crate version this registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$WBG_VERSION"
fi
cargo build --release --target wasm32-unknown-unknown -p atd-wasm
rm -rf web/pkg
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/release/atd_wasm.wasm

DATA=${ATD_DATA:-../shared/data}
if [ -f "$DATA/cifar10-test.bin" ]; then
  cargo run -q --release -p atd-core --example cifar_samples -- "$DATA/cifar10-test.bin" web/samples/cifar
else
  echo "no data pack at $DATA: the page offers only its generated samples"
fi
echo "built web/ ($(du -sh web/pkg | cut -f1) of wasm package)"

SITE=${SITE:-target/site}
VERSION=$(cat web/index.html web/*.js web/style.css web/pkg/* web/models/* | sha256sum | cut -c1-12)
rm -rf "$SITE"
mkdir -p "$SITE"
cp -r web/index.html web/app.js web/worker.js web/decode.js web/style.css web/pkg web/models "$SITE/"
if [ -d web/samples ]; then cp -r web/samples "$SITE/"; fi
# app.js hands its own ?v= on to everything else it loads.
sed -i "s|src=\"app.js\"|src=\"app.js?v=$VERSION\"|; s|href=\"style.css\"|href=\"style.css?v=$VERSION\"|" "$SITE/index.html"
grep -q "app.js?v=$VERSION" "$SITE/index.html" || { echo "could not version $SITE/index.html"; exit 1; }
echo "wrote the site to publish: $SITE/ (version $VERSION, $(du -sh "$SITE" | cut -f1))"
