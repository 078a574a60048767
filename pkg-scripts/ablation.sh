#!/usr/bin/env bash
# The paper's Table 3 at this project's scale: ATD's design choices changed one at a time on the
# shipped ATD's extractor. Each variant is trained with one short recipe (frozen generator unless
# that is the change, lr 1e-3, 5 epochs, PGD-5 training attacks, 5000 CIFAR-10 training images,
# seed 0), then attacked with the same end-to-end PGD, before the next one starts; after each,
# docs/ablation.md and docs/ablation.json (which `atd report` prints as Table 3) are rewritten
# with every variant finished so far, so a stopped run leaves what it measured. Every stage
# resumes: rerun after an interruption (evaluations are kept in $RUNS/ablation-eval, keyed by
# the weights' content and the evaluation settings).
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

# The shipped ATD holds the extractor it was trained on (AT, small preset); the variants reuse it.
shipped=web/models/atd.safetensors
recipe=(--lr 1e-3 --epochs 5 --attack-steps 5 --train-limit 5000 --seed 0 --backend "$BACKEND")
eps=0.0313725  # 8/255: the pixel variant's generated images are attacked like real images

# name | training arguments (empty: an existing file) | what changes | the paper's Table 3 row
# (Clean / In / Out / In-and-Out; our reading of its table, whose check marks the text copy loses)
variants=(
  "atd|--extractor $shipped --generator frozen|ATD: the shipped extractor, real in-distribution images and real outliers attacked|0.943 / 0.837 / 0.862 / 0.693"
  "standard-extractor|--extractor web/models/standard.safetensors --generator frozen|standard (non-robust) extractor instead of the robust one|0.706 / 0.263 / 0.147 / 0.029"
  "no-attack|--extractor $shipped --generator frozen --no-attack|no adversarial training (OpenGAN-fea on the robust extractor)|0.947 / 0.741 / 0.720 / 0.511"
  "pixel|--pixel small --generator frozen|no extractor: D on pixels (its own small backbone from scratch) against generated images, attacked like ATD|0.923 / 0.789 / 0.771 / 0.560"
  "pixel-attack-generated|--pixel small --generator frozen --attack-generated $eps|the pixel variant with the generated images attacked too (8/255)|0.916 / 0.776 / 0.758 / 0.546"
  "attack-generated|--extractor $shipped --generator frozen --attack-generated $FEATURE_RADIUS|ATD with the generated features attacked too (feature-space PGD, radius $FEATURE_RADIUS)|"
  "shipped||ATD as shipped (its own, longer recipe: docs/training.md), for scale|"
  "trained-generator|--extractor $shipped --generator trained|ATD with a trained generator instead of the reference's frozen one|"
  "hat-extractor|--extractor checkpoints/hat/extractor.safetensors --generator frozen|ATD on the HAT extractor (the paper's choice; checkpoints/hat, 15 epochs)|"
)

# A content digest of the weights (the same tensors and card give the same digest, however the
# file's header is ordered).
weights_digest() {
  "$ATD" digest "$1" | cut -c1-16
}

# The feature-space radius beside what the image attack does to real features.
shift_report=$RUNS/ablation-eval/feature-shift.txt
[ -s "$shift_report" ] || cargo run -q --release -p atd-train --example feature_shift -- "$shipped" >"$shift_report"

# docs/ablation.md and docs/ablation.json from the variants measured so far (manifest lines:
# name|file|digest|what|paper|validation AUROC clean / PGD-10 In-and-Out).
manifest=$RUNS/ablation-eval/manifest
: >"$manifest"
write_pages() {
  python3 - "$manifest" "$shift_report" "$FEATURE_RADIUS" "$(date -u +%Y-%m-%d)" "$(nproc)" "$BACKEND" \
    "${recipe[*]}" "$LIMIT" "$OUT_LIMIT" "$STEPS" "$shipped" "${variants[@]}" <<'EOF'
import json, sys
(manifest, shift, radius, day, cores, backend, recipe, limit, out_limit, steps, shipped), variants = sys.argv[1:12], sys.argv[12:]
done = [line.rstrip("\n").split("|") for line in open(manifest) if line.strip()]
measured = {name for name, *_ in done}
rows, details, entries = [], [], []
for name, weights, digest, what, paper, validation in done:
    result = json.load(open(f"docs/ablation/{name}.json"))[0]
    auroc = [m["auroc"] for m in result["average"]]
    rows.append("| %s | %s | %s | %s |" % (what, " | ".join("%.3f" % a for a in auroc), validation, paper))
    details.append(f"## {what}\n\n`{weights}` (digest {digest}): {open(f'docs/ablation/{name}.md').read()}")
    entries.append({"variant": name, "description": what, "file": weights, "digest": digest,
                    "paper": [float(v) for v in paper.split(" / ")] if paper else None,
                    "validation_auroc": dict(zip(["clean", "pgd10_in_out"], map(float, validation.split(" / ")))),
                    "evaluation": result})
pending = [v.split("|")[2] for v in variants if v.split("|")[0] not in measured]
fence = "```"
page = f"""# Ablation of ATD (paper Table 3), at this project's scale

Written by `pkg-scripts/ablation.sh` ({day}, {cores} CPU cores, backend {backend}) on the shipped
ATD's extractor (`{shipped}`). Every trained variant: `atd train atd` with {recipe} on the data
pack, frozen generator unless said; evaluated with `atd eval <weights> --limit {limit} --out-limit
{out_limit} --steps {steps}` (end-to-end PGD-{steps} at eps 8/255 on the detector's score; the
first {limit} CIFAR-10 test images and the first {out_limit} of each of the six OOD sets). Mean
AUROC over the OOD sets; the validation column is each variant's AUROC against held-out Food-101
at its selected epoch, clean (what selected the epoch) and under PGD-10 on both sides; the paper
column is its Table 3 (HAT extractor, full training).

| variant | Clean | In | Out | In-and-Out | validation AUROC, clean / In-and-Out (Food-101) | paper: Clean / In / Out / In-and-Out |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
if pending:
    page += "\nNot measured yet (the script was stopped before them; rerun it to continue): " + "; ".join(pending) + ".\n"
page += f"""
The generated features are attacked with radius {radius} (FEATURE_RADIUS). For scale,
`cargo run --release -p atd-train --example feature_shift -- {shipped}`:

{fence}
{open(shift).read().rstrip()}
{fence}

""" + "\n".join(details)
open("docs/ablation.md", "w").write(page)
json.dump({"written_by": "pkg-scripts/ablation.sh", "date": day, "extractor": shipped, "recipe": recipe,
           "evaluation": {"limit": int(limit), "out_limit": int(out_limit), "steps": int(steps)},
           "variants": entries, "pending": pending}, open("docs/ablation.json", "w"), indent=1)
EOF
}

for v in "${variants[@]}"; do
  IFS='|' read -r name args what paper <<<"$v"
  if [ -z "$args" ]; then
    weights=$shipped
  else
    weights=$RUNS/ablation-$name/atd.safetensors
    # shellcheck disable=SC2086 # the training arguments are words
    [ -f "$weights" ] || "$ATD" train atd $args "${recipe[@]}" --resume --out "$RUNS/ablation-$name"
  fi
  digest=$(weights_digest "$weights")
  cached=$RUNS/ablation-eval/$digest-$LIMIT-$OUT_LIMIT-$STEPS
  if [ ! -s "$cached.md" ]; then
    "$ATD" eval "$weights" --limit "$LIMIT" --out-limit "$OUT_LIMIT" --steps "$STEPS" --backend "$BACKEND" --json "$cached.json" >"$cached.part"
    mv "$cached.part" "$cached.md"
  fi
  cp "$cached.json" "docs/ablation/$name.json"
  cp "$cached.md" "docs/ablation/$name.md"
  val=$("$ATD" info "$weights" --json | python3 -c 'import json,sys; v = json.load(sys.stdin)["metrics"]["validation"]; print("%.3f / %.3f" % (v["val_auroc"], v["val_pgd10_in_out_auroc"]))')
  echo "$name|$weights|$digest|$what|$paper|$val" >>"$manifest"
  write_pages
  echo "measured $name: docs/ablation.md"
done
