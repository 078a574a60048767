#!/usr/bin/env bash
# The paper's Table 3 at this project's scale: ATD's design choices changed one at a time. Each
# variant is trained with the shipped ATD's recipe (frozen generator unless that is the change,
# lr 1e-3, 5 epochs, PGD-5 training attacks, 5000 CIFAR-10 training images, seed 0) and all are
# attacked with the same end-to-end PGD; writes docs/ablation/<variant>.{json,md} and
# docs/ablation.md. Every stage resumes: rerun after an interruption (evaluations are kept in
# $RUNS/ablation-eval, keyed by the weights' content and the evaluation settings).
#   ATD_DATA        data pack folder (default ../shared/data)
#   RUNS            run folders (default runs/)
#   BACKEND         cpu or wgpu (default cpu)
#   FEATURE_RADIUS  L-infinity radius of the feature-space attack on generated features
#   LIMIT OUT_LIMIT STEPS   evaluation size: first N CIFAR-10 test images, first N per OOD set, PGD steps
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
BACKEND=${BACKEND:-cpu}
ATD=${ATD:-target/release/atd}
FEATURE_RADIUS=${FEATURE_RADIUS:-0.2}
LIMIT=${LIMIT:-200}
OUT_LIMIT=${OUT_LIMIT:-100}
STEPS=${STEPS:-100}
[ -x "$ATD" ] || cargo build --release -p atd-cli
mkdir -p "$RUNS/ablation-eval" docs/ablation

# The shipped ATD holds the HAT extractor it was trained on; the variants reuse it.
hat=web/models/atd.safetensors
recipe=(--lr 1e-3 --epochs 5 --attack-steps 5 --train-limit 5000 --seed 0 --backend "$BACKEND")
"$ATD" train atd --extractor "$hat" "${recipe[@]}" --resume --generator frozen --out "$RUNS/ablation-atd"
"$ATD" train atd --extractor "$hat" "${recipe[@]}" --resume --generator trained --out "$RUNS/ablation-trained-generator"
"$ATD" train atd --extractor web/models/standard.safetensors "${recipe[@]}" --resume --generator frozen --out "$RUNS/ablation-standard-extractor"
"$ATD" train atd --extractor "$hat" "${recipe[@]}" --resume --generator frozen --no-attack --out "$RUNS/ablation-no-attack"
"$ATD" train atd --extractor "$hat" "${recipe[@]}" --resume --generator frozen --attack-generated "$FEATURE_RADIUS" --out "$RUNS/ablation-attack-generated"

variants=(
  "shipped|$hat|ATD as shipped (trained by an earlier revision with this recipe)"
  "atd|$RUNS/ablation-atd/atd.safetensors|ATD: HAT extractor, real in and real outliers attacked"
  "trained-generator|$RUNS/ablation-trained-generator/atd.safetensors|ATD with a trained generator instead of the reference's frozen one"
  "standard-extractor|$RUNS/ablation-standard-extractor/atd.safetensors|standard (non-robust) extractor instead of HAT"
  "no-attack|$RUNS/ablation-no-attack/atd.safetensors|no adversarial training (OpenGAN-fea)"
  "attack-generated|$RUNS/ablation-attack-generated/atd.safetensors|generated features attacked too (feature-space PGD, radius $FEATURE_RADIUS)"
)
# A content digest of the weights (the same tensors and card give the same digest, however the
# file's header is ordered).
weights_digest() {
  "$ATD" digest "$1" | cut -c1-16
}
page=docs/ablation.md
{
  echo "# Ablation of ATD (paper Table 3), at this project's scale"
  echo
  echo "Written by \`pkg-scripts/ablation.sh\` ($(date -u +%Y-%m-%d), $(nproc) CPU cores, backend $BACKEND)."
  echo "Every variant: \`atd train atd\` with ${recipe[*]} on the data pack, frozen generator unless said;"
  echo "evaluated with \`atd eval <weights> --limit $LIMIT --out-limit $OUT_LIMIT --steps $STEPS\`"
  echo "(end-to-end PGD-$STEPS at eps 8/255 on the ATD score; the first $LIMIT CIFAR-10 test images and"
  echo "the first $OUT_LIMIT of each OOD set). Mean AUROC over the six OOD sets:"
  echo
  echo "| variant | Clean | In | Out | In-and-Out | validation AUROC (Food-101) |"
  echo "|---|---|---|---|---|---|"
} >"$page.rows"
# The feature-space radius beside what the image attack does to real features.
shift=$(cargo run -q --release -p atd-train --example feature_shift -- "$hat")
fence='```'
details="
The generated features are attacked with radius $FEATURE_RADIUS (FEATURE_RADIUS). For scale,
\`cargo run --release -p atd-train --example feature_shift -- $hat\`:

$fence
$shift
$fence
"
for v in "${variants[@]}"; do
  IFS='|' read -r name weights what <<<"$v"
  cached=$RUNS/ablation-eval/$(weights_digest "$weights")-$LIMIT-$OUT_LIMIT-$STEPS
  if [ ! -s "$cached.md" ]; then
    "$ATD" eval "$weights" --limit "$LIMIT" --out-limit "$OUT_LIMIT" --steps "$STEPS" --backend "$BACKEND" --json "$cached.json" >"$cached.part"
    mv "$cached.part" "$cached.md"
  fi
  result=docs/ablation/$name
  cp "$cached.json" "$result.json"
  cp "$cached.md" "$result.md"
  val=$("$ATD" info "$weights" --json | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["metrics"]["validation"]["val_auroc"])')
  python3 - "$result.json" "$what" "$val" >>"$page.rows" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))[0]
print("| %s | %s | %s |" % (sys.argv[2], " | ".join("%.3f" % m["auroc"] for m in result["average"]), sys.argv[3]))
EOF
  details+=$'\n'"## $what"$'\n\n'"\`$weights\`: $(cat "$result.md")"$'\n'
done
{ cat "$page.rows"; echo "$details"; } >"$page"
rm "$page.rows"
echo "wrote $page"
