#!/usr/bin/env bash
# `atd bench` (atd-train's convolution and BatchNorm kernels on Burn 0.22.1's flex backend)
# against the same presets written with Burn's own modules (pkg-scripts/bench-burn-versions/),
# built at each Burn version, alternating in one run. Prints a Markdown table for
# docs/training.md. Not part of the test command.
#
#   pkg-scripts/bench-burn-versions.sh [ROUNDS]     (default 3; batch 128, 10 timed steps each)
#
# Each version is a cold build of Burn's flex backend (about 10 CPU-minutes here) into
# $ATD_BURN_BENCH_DIR (default /tmp/atd-burn-versions); $ATD_BURN_VERSIONS lists the versions
# (default "0.22.1 0.23.0-pre.1"); the atd binary is $ATD (default target/release/atd).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
batch=${ATD_BENCH_BATCH:-128}
iterations=${ATD_BENCH_ITERATIONS:-10}
versions=${ATD_BURN_VERSIONS:-0.22.1 0.23.0-pre.1}
dir=${ATD_BURN_BENCH_DIR:-/tmp/atd-burn-versions}
ATD=${ATD:-target/release/atd}
[ -x "$ATD" ] || cargo build --release -p atd-cli >&2

for version in $versions; do
    src="$dir/src-$version"
    mkdir -p "$src"
    cp -r pkg-scripts/bench-burn-versions/Cargo.toml pkg-scripts/bench-burn-versions/src "$src/"
    sed -i "s/version = \"=[^\"]*\"/version = \"=$version\"/" "$src/Cargo.toml"
    echo "building the presets on Burn $version" >&2
    CARGO_TARGET_DIR="$dir/target-$version" cargo build --release --quiet --manifest-path "$src/Cargo.toml" >&2
done

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
    echo "round $round/$rounds" >&2
    for arch in small wide; do
        "$ATD" bench --arch "$arch" --batch "$batch" --iterations "$iterations" --json | sed 's/^{/{"who":"atd",/' >>"$results"
        for version in $versions; do
            "$dir/target-$version/release/bench-burn-versions" "$arch" "$batch" "$iterations" |
                sed "s/^{/{\"who\":\"$version\",/" >>"$results"
        done
    done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
python3 pkg-scripts/bench_peers_table.py "$results" burn \
    "$cpu, $(nproc) threads, batch $batch, $rounds alternating rounds; Burn's ops with the x86-v4 feature, as atd-train"
