#!/usr/bin/env bash
# Make the held-out check set: images far from CIFAR-10 of the kinds users try (screenshots of
# text, drawn digits, textures, night skies, microscope-like slides, drawings), drawn with
# ImageMagick and the DejaVu fonts, never with the code that makes ATD's synthetic training
# outliers (crates/atd-train/src/synthetic.rs), and never used for training or model selection.
# The PNGs are committed under tests/check-images/; `atd score` on them is how docs/training.md counts
# them. Needs imagemagick and fonts-dejavu (apt). Deterministic: fixed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=tests/check-images
rm -rf "$OUT"
mkdir -p "$OUT"
# The last argument is the output; no timestamps, so reruns give the same bytes.
im() { convert "${@:1:$#-1}" -strip -define png:exclude-chunks=date,time "${@: -1}"; }
S=128x128
SANS=DejaVu-Sans
SERIF=DejaVu-Serif
MONO=DejaVu-Sans-Mono

# Text: documents, code, a terminal, a chat; light and dark themes; sizes as screenshots shrink.
im -size $S xc:white -font $SANS -pointsize 11 -fill black -annotate +4+14 \
  "The quick brown fox\njumps over the lazy\ndog. Out-of-distri-\nbution detection is\nnot robust unless\nit is trained to be." "$OUT/text-document.png"
im -size $S xc:'#fdfdf6' -font $SERIF -pointsize 9 -fill '#222' -annotate +3+10 \
  "$(printf 'Lorem ipsum dolor sit amet,\nconsectetur adipiscing elit,\nsed do eiusmod tempor\nincididunt ut labore et\ndolore magna aliqua. Ut\nenim ad minim veniam, quis\nnostrud exercitation ullamco\nlaboris nisi ut aliquip ex\nea commodo consequat.\nDuis aute irure dolor in\nreprehenderit in voluptate.')" "$OUT/text-serif-page.png"
im -size $S xc:'#1e1e1e' -font $MONO -pointsize 9 -fill '#d4d4d4' -annotate +3+12 \
  "$(printf 'fn main() {\n    let x = 42;\n    println!(\"{x}\");\n}\n\n$ cargo run\n   Compiling atd\n    Finished\n42')" "$OUT/text-code-dark.png"
im -size $S xc:black -font $MONO -pointsize 10 -fill '#33ff33' -annotate +3+12 \
  "$(printf 'user@host:~$ ls\nbin  etc  home\nuser@host:~$ df -h\n/dev/sda1  40G\nuser@host:~$ _')" "$OUT/text-terminal.png"
im -size $S xc:white -font $SANS -pointsize 30 -fill black -gravity center -annotate +0+0 "STOP\nHERE" "$OUT/text-large-words.png"
im -size $S xc:'#e5ddd5' -fill '#dcf8c6' -draw "roundrectangle 30,10 124,40 8,8" -fill white -draw "roundrectangle 4,50 98,80 8,8" \
  -fill '#dcf8c6' -draw "roundrectangle 40,90 124,120 8,8" -font $SANS -pointsize 9 -fill black \
  -annotate +36+28 "see you at 7?" -annotate +10+68 "sure, where?" -annotate +46+108 "the usual place" "$OUT/text-chat.png"
im -size $S xc:white -font $SANS -pointsize 8 -fill black \
  -annotate +4+10 "$(printf 'Name      Qty   Price\nApples     12   3.40\nPears       4   1.20\nPlums      30   6.00\nTotal            10.60')" \
  -stroke '#888' -draw "line 2,14 126,14" -draw "line 2,52 126,52" "$OUT/text-table.png"
im -size $S xc:'#0b3d91' -font $SANS -pointsize 14 -fill white -gravity center -annotate +0+0 "Slide 3\nResults and\nDiscussion" "$OUT/text-slide.png"

# Digits drawn as strokes: dark on light and light on dark, several fonts and sizes.
im -size $S xc:white -font $SANS -pointsize 110 -fill black -gravity center -annotate +0+0 "7" "$OUT/digit-7-black-on-white.png"
im -size $S xc:black -font $SERIF -pointsize 110 -fill white -gravity center -annotate +0+0 "3" "$OUT/digit-3-white-on-black.png"
im -size $S xc:white -fill none -stroke black -strokewidth 9 -draw "bezier 30,40 60,0 110,40 40,110" -draw "line 40,110 100,110" "$OUT/digit-2-pen.png"
im -size $S xc:black -fill none -stroke white -strokewidth 12 -draw "ellipse 64,64 30,48 0,360" "$OUT/digit-0-chalk.png"

# Textures: ImageMagick's own generators and patterns, gray and coloured.
im -size $S -seed 11 plasma:fractal "$OUT/texture-plasma.png"
im -size $S -seed 12 plasma:fractal -colorspace gray -contrast-stretch 2% "$OUT/texture-plasma-gray.png"
im granite: -resize $S! "$OUT/texture-granite.png"
im -size $S pattern:bricks -scale 200% -crop $S+0+0 "$OUT/texture-bricks.png"
im -size $S pattern:hexagons -scale 200% -crop $S+0+0 "$OUT/texture-hexagons.png"
im -size $S pattern:crosshatch30 "$OUT/texture-crosshatch.png"
im -size $S xc:gray -seed 13 +noise Gaussian -blur 0x2 -colorspace gray -normalize "$OUT/texture-gravel.png"
im -size $S xc: -seed 14 +noise Random -channel G -separate +channel -blur 0x1 -motion-blur 0x12+90 -normalize \
  -fill '#3a7d2c' -tint 100 "$OUT/texture-grass.png"

# Night skies: a few stars, a dense field, a galaxy smudge.
im -size $S xc:black -seed 21 +noise Random -channel R -separate +channel -threshold 99.3% -blur 0x0.6 -normalize "$OUT/sky-stars.png"
im -size $S xc:black -seed 22 +noise Random -channel G -separate +channel -threshold 97% -blur 0x0.5 -normalize -fill '#aabbff' -tint 60 "$OUT/sky-dense-field.png"
im -size $S xc:'#05050f' -fill '#ffeecc' -draw "ellipse 64,64 40,12 0,360" -background '#05050f' -rotate 30 -gravity center -crop $S+0+0 -blur 0x6 "$OUT/sky-galaxy.png"
im -size $S gradient:'#0a1a3a'-'#000000' -seed 23 \( -size $S xc:black +noise Random -channel B -separate +channel -threshold 99.5% \) -compose screen -composite "$OUT/sky-dusk.png"

# Microscope-like slides: stained cells on a pale background, a bright-field blur.
im -size $S xc:'#f4e8f0' -fill '#c77dab' -draw "circle 30,30 42,36" -draw "circle 80,40 92,44" -draw "circle 60,90 70,98" \
  -fill '#5b2a6e' -draw "circle 30,30 34,32" -draw "circle 80,40 84,42" -draw "circle 60,90 63,92" -blur 0x1.5 "$OUT/microscope-cells.png"
im -size $S -seed 31 plasma:pink-white -blur 0x3 -fill '#7a3b8f' -draw "circle 90,80 96,86" -draw "circle 40,70 44,74" "$OUT/microscope-tissue.png"
im -size $S xc:'#eef4ee' -seed 32 +noise Random -channel G -separate +channel -threshold 99% -morphology Dilate Disk:2 -negate \
  -fill '#3c8d5a' -tint 80 -blur 0x1 "$OUT/microscope-bacteria.png"
im -size $S radial-gradient:'#ffffff'-'#303030' -fill '#8866aa' -draw "ellipse 64,64 20,30 20,340" -blur 0x2 "$OUT/microscope-brightfield.png"

# Drawings and graphics: a chart, a flow diagram, a smiley, ImageMagick's own logo.
im -size $S xc:white -stroke black -draw "line 10,118 122,118" -draw "line 10,118 10,6" -stroke none \
  -fill '#4477aa' -draw "rectangle 20,70 40,118" -draw "rectangle 50,40 70,118" -draw "rectangle 80,90 100,118" "$OUT/drawing-bar-chart.png"
im -size $S xc:white -fill none -stroke black -strokewidth 2 -draw "rectangle 10,10 60,40" -draw "rectangle 68,88 118,118" \
  -draw "line 35,40 35,64" -draw "line 35,64 93,64" -draw "line 93,64 93,88" "$OUT/drawing-flowchart.png"
im -size $S xc:white -fill '#ffd23f' -stroke black -strokewidth 3 -draw "circle 64,64 64,10" -fill black \
  -draw "circle 45,50 45,56" -draw "circle 83,50 83,56" -fill none -draw "arc 35,55 93,100 20,160" "$OUT/drawing-smiley.png"
im logo: -trim -resize $S -gravity center -extent $S "$OUT/drawing-logo.png"

ls "$OUT" | wc -l
