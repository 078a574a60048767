#!/usr/bin/env bash
# Build the browser demo: the atd-web wasm package into web/pkg/ (cargo + wasm-bindgen-cli at the
# version Cargo.lock pins), and, when the data pack is here (ATD_DATA, else ../shared/data), a
# few CIFAR-10 test images as PNGs in web/samples/cifar/ (git-ignored: datasets are never committed).
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
cargo build --release --target wasm32-unknown-unknown -p atd-web
rm -rf web/pkg
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/release/atd_web.wasm

DATA=${ATD_DATA:-../shared/data}
if [ -f "$DATA/cifar10-test.bin" ] && command -v python3 >/dev/null; then
  python3 - "$DATA/cifar10-test.bin" web/samples/cifar <<'PY'
import json, os, struct, sys, zlib
src, out = sys.argv[1], sys.argv[2]
names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
os.makedirs(out, exist_ok=True)
def png(path, rgb):
    raw = b"".join(b"\0" + rgb[y * 96:(y + 1) * 96] for y in range(32))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
index = []
with open(src, "rb") as f:
    data = f.read(3073 * 1000)
for i in range(0, 1000, 111):  # one per class (records are class-interleaved)
    rec = data[i * 3073:(i + 1) * 3073]
    label, chw = rec[0], rec[1:]
    rgb = bytes(chw[c * 1024 + p] for p in range(1024) for c in range(3))
    name = f"{names[label]}-{i}"
    png(os.path.join(out, name + ".png"), rgb)
    index.append({"name": f"CIFAR-10 {names[label]}", "file": name + ".png"})
json.dump(index, open(os.path.join(out, "index.json"), "w"))
print(f"extracted {len(index)} CIFAR-10 test images into {out}")
PY
else
  echo "no data pack at $DATA: the page offers only its generated samples"
fi
echo "built web/ ($(du -sh web/pkg | cut -f1) of wasm package)"
