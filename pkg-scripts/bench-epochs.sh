#!/usr/bin/env bash
# Many ATD epochs in one process, to show that an epoch costs the same at the end of a long run
# as at its start (time and resident memory flat) and how many cores the training steps keep
# busy. The shape of the shipped ATD recipe (train-default.sh: the robust small extractor, PGD-2
# training attacks, 9000 synthetic outliers beside Food-101, full validation sets, --ema 0.99) on
# a subset of the training images so that an epoch takes about a minute. Not part of the tests.
#
#   pkg-scripts/bench-epochs.sh [EPOCHS] [TRAIN_IMAGES]     (default 12 epochs of 4000 images)
#
# Prints one row per epoch (seconds, images/s, cores busy while training, resident MiB) read
# from the run's log.jsonl, and the first-to-last ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=${1:-12}
train_images=${2:-4000}
extractor=${ATD_BENCH_EXTRACTOR:-checkpoints/robust/extractor.safetensors}
out=${ATD_BENCH_OUT:-$(mktemp -d)/atd-epochs}
ATD=${ATD:-target/release/atd}
[ -x "$ATD" ] || cargo build --release -p atd-cli

"$ATD" train atd --extractor "$extractor" --generator frozen --lr 2e-4 --attack-steps 2 \
    --synthetic-outliers 9000 --val-synthetic 600 --select-on clean --ema 0.99 \
    --train-limit "$train_images" --epochs "$epochs" --out "$out" >&2

python3 - "$out/log.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| epoch | seconds | images/s | cores (training) | resident MiB |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['epoch']} | {r['epoch_seconds']:.1f} | {r['images_per_second']:.1f} | {r.get('train_cores', float('nan')):.2f} | {r.get('rss_mib', float('nan')):.0f} |")
first, last = rows[0], rows[-1]
print(f"\nlast/first: seconds {last['epoch_seconds'] / first['epoch_seconds']:.3f}, "
      f"resident memory {last['rss_mib'] / first['rss_mib']:.3f}")
EOF
