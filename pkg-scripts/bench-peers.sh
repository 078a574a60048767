#!/usr/bin/env bash
# `atd bench` against PyTorch's CPU build on the same architectures, batch and thread count,
# alternating in one run so that both see the same machine. Prints a Markdown table (ranges over
# the rounds) for docs/training.md. Not part of the test command.
#
#   pkg-scripts/bench-peers.sh [ROUNDS]        (default 3; batch 128, 10 timed steps each)
#   pkg-scripts/bench-peers.sh --ops [ROUNDS]  each convolution of the small preset alone (flex,
#                                              atd-train's own, PyTorch): forward, both gradients
#
# PyTorch goes into a throw-away virtual environment ($ATD_PEER_VENV, default
# /tmp/atd-peer-venv; the PyPI wheel pulls its CUDA libraries too, about 5 GB, even though only
# the CPU is used). The atd binary is $ATD (default target/release/atd, built here if missing),
# so that an older build can be measured beside PyTorch in the same way.
set -euo pipefail
cd "$(dirname "$0")/.."

ops=false
if [ "${1:-}" = "--ops" ]; then
    ops=true
    shift
fi
rounds=${1:-3}
batch=${ATD_BENCH_BATCH:-128}
iterations=${ATD_BENCH_ITERATIONS:-10}
threads=$(nproc)
venv=${ATD_PEER_VENV:-/tmp/atd-peer-venv}
torch_version=${ATD_PEER_TORCH:-2.15.0}
ATD=${ATD:-target/release/atd}

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "installing torch $torch_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "torch==$torch_version" numpy
fi
torch_full=$("$venv/bin/python" -c "import torch; print(torch.__version__)")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
results=$(mktemp)
trap 'rm -f "$results"' EXIT

# Run OURS and THEIRS (commands printing JSON lines) alternately, tagging each line with who.
alternate() {
    local ours=$1 theirs=$2
    for round in $(seq 1 "$rounds"); do
        echo "round $round/$rounds" >&2
        eval "$ours" | sed 's/^{/{"who":"atd",/' >>"$results"
        eval "OMP_NUM_THREADS=$threads $theirs" | sed 's/^{/{"who":"torch",/' >>"$results"
    done
}
peer="$venv/bin/python pkg-scripts/bench_peers.py --batch $batch --iterations $iterations --threads $threads"

if $ops; then
    cargo build --release -p atd-train --example conv_ops >&2
    alternate "target/release/examples/conv_ops $batch $iterations" "$peer --ops"
else
    [ -x "$ATD" ] || cargo build --release -p atd-cli >&2
    alternate "for a in small wide; do $ATD bench --arch \$a --batch $batch --iterations $iterations --json; done" \
        "$peer --arch small --arch wide"
fi

mode=$($ops && echo ops || echo steps)
python3 pkg-scripts/bench_peers_table.py "$results" "$mode" \
    "$cpu, $threads threads, batch $batch, $rounds alternating rounds; PyTorch $torch_full (CPU)"
