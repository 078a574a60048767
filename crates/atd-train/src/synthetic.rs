//! Synthetic outliers for ATD training and validation: procedural 32x32 images that are neither
//! CIFAR-10 nor any of the six OOD test sets (noise, flat colours, gradients, stripes, shapes,
//! strokes, text-like glyph rows, blurry textures), and recoloured copies of real outliers
//! (grayscale, swapped or inverted channels). Training with the paper's Food-101 outliers alone
//! leaves everything that is neither CIFAR-10 nor food to chance.
//!
//! The validation families are different generators from the training ones (star fields, cell
//! blobs, fractal grayscale textures), so that selecting a model on them rewards generalising to
//! unseen kinds of outliers rather than fitting the training outliers.
//!
//! One file past the usual length: a dozen short generators sharing one seeded drawing kit
//! (shapes, strokes, colours), each a few dozen lines.

use atd_core::data::ImageSet;
use atd_core::{IMAGE_SIZE, IMAGE_VALUES};

use crate::rng::Rng;

const S: usize = IMAGE_SIZE;

/// The procedural families drawn for training.
pub const TRAIN_FAMILIES: [&str; 8] =
    ["noise", "flat", "gradient", "stripes", "shapes", "strokes", "glyphs", "blur-texture"];
/// The procedural families held out for validation.
pub const VAL_FAMILIES: [&str; 4] = ["star-field", "cells", "fractal-texture", "pen-curves"];

/// An image being drawn, channels-last floats in [0, 1].
struct Canvas {
    rgb: Vec<[f32; 3]>,
}

impl Canvas {
    fn filled(colour: [f32; 3]) -> Self {
        Self { rgb: vec![colour; S * S] }
    }

    fn from_fn(mut f: impl FnMut(f32, f32) -> [f32; 3]) -> Self {
        let rgb = (0..S * S).map(|i| f((i % S) as f32 + 0.5, (i / S) as f32 + 0.5)).collect();
        Self { rgb }
    }

    /// Blend `colour` into every pixel where `coverage(x, y)` (in [0, 1]) is positive.
    fn paint(&mut self, colour: [f32; 3], coverage: impl Fn(f32, f32) -> f32) {
        for (i, px) in self.rgb.iter_mut().enumerate() {
            let a = coverage((i % S) as f32 + 0.5, (i / S) as f32 + 0.5).clamp(0.0, 1.0);
            if a > 0.0 {
                for c in 0..3 {
                    px[c] = px[c] * (1.0 - a) + colour[c] * a;
                }
            }
        }
    }

    /// CHW bytes, as the data sets hold them.
    fn into_bytes(self) -> Vec<u8> {
        let mut out = vec![0u8; IMAGE_VALUES];
        for (i, px) in self.rgb.iter().enumerate() {
            for c in 0..3 {
                out[c * S * S + i] = (px[c].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        out
    }
}

fn colour(rng: &mut Rng) -> [f32; 3] {
    [rng.uniform(), rng.uniform(), rng.uniform()]
}

fn gray(rng: &mut Rng) -> [f32; 3] {
    let v = rng.uniform();
    [v, v, v]
}

/// A colour, or with probability one half a gray level: much of what is not CIFAR-10 is
/// monochrome (documents, drawings, scans).
fn any_colour(rng: &mut Rng) -> [f32; 3] {
    if rng.below(2) == 0 { colour(rng) } else { gray(rng) }
}

/// Light paper and dark ink, or the reverse.
fn ink_and_paper(rng: &mut Rng) -> ([f32; 3], [f32; 3]) {
    let paper = 0.75 + 0.25 * rng.uniform();
    let ink = 0.3 * rng.uniform();
    let (paper, ink) = ([paper; 3], [ink; 3]);
    if rng.below(4) == 0 { (ink, paper) } else { (paper, ink) }
}

fn lerp(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Distance from (x, y) to the segment from a to b.
fn segment_distance((x, y): (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = (dx * dx + dy * dy).max(1e-6);
    let t = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
    ((x - a.0 - t * dx).powi(2) + (y - a.1 - t * dy).powi(2)).sqrt()
}

fn point(rng: &mut Rng) -> (f32, f32) {
    (rng.uniform() * S as f32, rng.uniform() * S as f32)
}

/// Smooth value noise: a random `cells x cells` lattice, bilinearly interpolated.
fn value_noise(rng: &mut Rng, cells: usize) -> impl Fn(f32, f32) -> f32 + use<> {
    let lattice: Vec<f32> = (0..(cells + 1) * (cells + 1)).map(|_| rng.uniform()).collect();
    move |x, y| {
        let (fx, fy) = (x / S as f32 * cells as f32, y / S as f32 * cells as f32);
        let (ix, iy) = ((fx as usize).min(cells - 1), (fy as usize).min(cells - 1));
        let (tx, ty) = (fx - ix as f32, fy - iy as f32);
        let at = |i: usize, j: usize| lattice[j * (cells + 1) + i];
        let top = at(ix, iy) * (1.0 - tx) + at(ix + 1, iy) * tx;
        let bottom = at(ix, iy + 1) * (1.0 - tx) + at(ix + 1, iy + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

fn draw(family: &str, rng: &mut Rng) -> Canvas {
    match family {
        "noise" => {
            let (low, high) = (rng.uniform() * 0.5, 0.5 + rng.uniform() * 0.5);
            let mono = rng.below(2) == 0;
            Canvas::from_fn(|_, _| {
                let c = if mono { gray(rng) } else { colour(rng) };
                c.map(|v| low + (high - low) * v)
            })
        }
        "flat" => {
            let (base, jitter) = (any_colour(rng), 0.03 * rng.uniform());
            Canvas::from_fn(|_, _| base.map(|v| v + jitter * (rng.uniform() - 0.5)))
        }
        "gradient" => {
            let (a, b) = (any_colour(rng), any_colour(rng));
            let angle = rng.uniform() * std::f32::consts::TAU;
            let (cx, cy) = point(rng);
            let radial = rng.below(3) == 0;
            Canvas::from_fn(|x, y| {
                let t = if radial {
                    ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() / (S as f32 * 1.2)
                } else {
                    ((x - S as f32 / 2.0) * angle.cos() + (y - S as f32 / 2.0) * angle.sin()) / S as f32 + 0.5
                };
                lerp(a, b, t.clamp(0.0, 1.0))
            })
        }
        "stripes" => {
            let (a, b) = (any_colour(rng), any_colour(rng));
            let angle = rng.uniform() * std::f32::consts::PI;
            let period = 2.0 + rng.uniform() * 14.0;
            let (square, checker) = (rng.below(2) == 0, rng.below(4) == 0);
            Canvas::from_fn(|x, y| {
                let t = if checker {
                    (((x / period) as usize + (y / period) as usize) % 2) as f32
                } else {
                    let phase = (x * angle.cos() + y * angle.sin()) / period * std::f32::consts::TAU;
                    if square { (phase.sin() > 0.0) as u8 as f32 } else { 0.5 + 0.5 * phase.sin() }
                };
                lerp(a, b, t)
            })
        }
        "shapes" => {
            let mut canvas = Canvas::filled(any_colour(rng));
            for _ in 0..1 + rng.below(5) {
                let (c, (cx, cy), r) = (any_colour(rng), point(rng), 3.0 + rng.uniform() * 12.0);
                match rng.below(3) {
                    0 => canvas.paint(c, |x, y| r - ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() + 0.5),
                    1 => canvas.paint(c, |x, y| ((x - cx).abs() < r && (y - cy).abs() < r * 0.6) as u8 as f32),
                    _ => canvas.paint(c, |x, y| {
                        ((y - cy + r * 0.5) > 0.0
                            && (y - cy + r * 0.5) < r
                            && (x - cx).abs() < (y - cy + r * 0.5) * 0.6) as u8 as f32
                    }),
                }
            }
            canvas
        }
        "strokes" => {
            let (paper, ink) = ink_and_paper(rng);
            let mut canvas = Canvas::filled(paper);
            for _ in 0..1 + rng.below(3) {
                let width = 1.0 + rng.uniform() * 2.5;
                let mut a = point(rng);
                for _ in 0..2 + rng.below(4) {
                    let b = (a.0 + (rng.uniform() - 0.5) * 20.0, a.1 + (rng.uniform() - 0.5) * 20.0);
                    canvas.paint(ink, |x, y| width / 2.0 - segment_distance((x, y), a, b) + 0.5);
                    a = b;
                }
            }
            canvas
        }
        "glyphs" => {
            // Rows of small dark marks on a light background: text as a screenshot shrinks it.
            let (paper, ink) = ink_and_paper(rng);
            let (line, glyph) = (4 + rng.below(5), 2 + rng.below(3));
            let marks: Vec<bool> = (0..S * S).map(|_| rng.below(3) > 0).collect();
            let margin = rng.below(6);
            Canvas::from_fn(|x, y| {
                let (ix, iy) = (x as usize, y as usize);
                let in_text = ix >= margin && ix < S - margin && iy % line < line - 1 - (line > 5) as usize;
                let cell = (iy / line) * S + ix / glyph;
                let on = in_text && marks[cell] && (ix % glyph != glyph - 1) && marks[(cell * 7 + iy) % marks.len()];
                if on { ink } else { paper }
            })
        }
        "blur-texture" => {
            let (a, b) = (any_colour(rng), any_colour(rng));
            let cells = 2 + rng.below(6);
            let noise = value_noise(rng, cells);
            Canvas::from_fn(|x, y| lerp(a, b, noise(x, y)))
        }
        "star-field" => {
            let sky = [0.05 * rng.uniform(), 0.05 * rng.uniform(), 0.1 * rng.uniform()];
            let mut canvas = Canvas::filled(sky);
            for _ in 0..5 + rng.below(40) {
                let ((cx, cy), r, c) = (point(rng), 0.3 + rng.uniform() * 1.5, lerp([1.0; 3], colour(rng), 0.4));
                canvas.paint(c, |x, y| 1.0 - ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() / r);
            }
            canvas
        }
        "cells" => {
            let (background, stain) = (lerp([0.95; 3], colour(rng), 0.2), colour(rng));
            let mut canvas = Canvas::filled(background);
            for _ in 0..3 + rng.below(12) {
                let ((cx, cy), r) = (point(rng), 2.0 + rng.uniform() * 5.0);
                canvas.paint(lerp(stain, background, 0.5), |x, y| r - ((x - cx).powi(2) + (y - cy).powi(2)).sqrt());
                canvas.paint(stain, |x, y| r * 0.4 - ((x - cx).powi(2) + (y - cy).powi(2)).sqrt());
            }
            canvas
        }
        "fractal-texture" => {
            let octaves: Vec<_> = [4, 8, 16, 32].iter().map(|&c| value_noise(rng, c)).collect();
            let (contrast, base) = (0.5 + rng.uniform(), rng.uniform() * 0.5);
            Canvas::from_fn(|x, y| {
                let v: f32 =
                    octaves.iter().enumerate().map(|(k, n)| n(x, y) / 2f32.powi(k as i32)).sum::<f32>() / 1.875;
                [(base + contrast * (v - 0.5)).clamp(0.0, 1.0); 3]
            })
        }
        "pen-curves" => {
            // One or two smooth, thick, light pen curves centred on a dark ground, as a scanned
            // digit or letter: handwriting drawn unlike the training strokes (straight segments,
            // thinner, anywhere, mostly dark ink on light paper).
            let ground = [0.1 * rng.uniform(); 3];
            let ink = [0.8 + 0.2 * rng.uniform(); 3];
            let width = 2.0 + rng.uniform() * 2.0;
            let mut canvas = Canvas::filled(ground);
            for _ in 0..1 + rng.below(2) {
                let (ax, ay) = (3.0 + rng.uniform() * 7.0, 3.0 + rng.uniform() * 7.0);
                let (fx, fy) = (1.0 + rng.below(3) as f32, 1.0 + rng.below(3) as f32);
                let (px, py) = (rng.uniform() * std::f32::consts::TAU, rng.uniform() * std::f32::consts::TAU);
                let (t0, span) = (rng.uniform() * std::f32::consts::TAU, std::f32::consts::PI * (1.0 + rng.uniform()));
                let curve: Vec<(f32, f32)> = (0..=24)
                    .map(|k| {
                        let t = t0 + span * k as f32 / 24.0;
                        (S as f32 / 2.0 + ax * (fx * t + px).sin(), S as f32 / 2.0 + ay * (fy * t + py).sin())
                    })
                    .collect();
                canvas.paint(ink, |x, y| {
                    let d = curve.windows(2).map(|w| segment_distance((x, y), w[0], w[1])).fold(f32::MAX, f32::min);
                    width / 2.0 - d + 0.5
                });
            }
            canvas
        }
        other => unreachable!("unknown synthetic family {other}"),
    }
}

/// Recolour a real image: grayscale, a channel permutation, or the negative.
fn recolour(image: &[u8], rng: &mut Rng) -> Vec<u8> {
    let plane = S * S;
    let mut out = vec![0u8; IMAGE_VALUES];
    match rng.below(3) {
        0 => {
            for i in 0..plane {
                let y = 0.299 * image[i] as f32 + 0.587 * image[plane + i] as f32 + 0.114 * image[2 * plane + i] as f32;
                for c in 0..3 {
                    out[c * plane + i] = y.round() as u8;
                }
            }
        }
        1 => {
            let order = [[1, 2, 0], [2, 0, 1], [2, 1, 0], [0, 2, 1], [1, 0, 2]][rng.below(5)];
            for (c, &from) in order.iter().enumerate() {
                out[c * plane..(c + 1) * plane].copy_from_slice(&image[from * plane..(from + 1) * plane]);
            }
        }
        _ => out.iter_mut().zip(image).for_each(|(o, &v)| *o = 255 - v),
    }
    out
}

/// `count` images cycling through `families`, seeded; the label is the family's index.
pub fn procedural(families: &[&str], count: usize, seed: u64) -> ImageSet {
    let mut rng = Rng::new(seed);
    let mut pixels = Vec::with_capacity(count * IMAGE_VALUES);
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let family = i % families.len();
        pixels.extend(draw(families[family], &mut rng).into_bytes());
        labels.push(family as u16);
    }
    ImageSet { pixels, labels, class_names: families.iter().map(|f| f.to_string()).collect() }
}

/// `count` images of one named family (training or validation), for evaluating a detector on
/// a family as an OOD set; the seed is not one training or validation draws with.
pub fn family_set(family: &str, count: usize) -> anyhow::Result<ImageSet> {
    let known = || TRAIN_FAMILIES.iter().chain(&VAL_FAMILIES);
    anyhow::ensure!(
        known().any(|f| *f == family),
        "unknown synthetic family {family:?}; known: {}",
        known().copied().collect::<Vec<_>>().join(", ")
    );
    Ok(procedural(&[family], count, 0xE7A1_5E70))
}

/// Recoloured copies of images `idx` of `set` (one each), seeded.
pub fn recoloured(set: &ImageSet, idx: &[usize], seed: u64) -> ImageSet {
    let mut rng = Rng::new(seed);
    let pixels = idx.iter().flat_map(|&i| recolour(set.image(i), &mut rng)).collect();
    ImageSet { pixels, labels: vec![0; idx.len()], class_names: vec!["recoloured".into()] }
}

/// Outliers made from in-distribution images by breaking what makes them one object
/// ("negative data augmentation", Sinha et al. 2021): `jigsaw` shuffles a 4x4 grid of patches of
/// one image, `mosaic` tiles four half-size images 2x2, and `zoom` enlarges a crop of 8-16
/// pixels (bilinear). Their colours, textures and parts are CIFAR-10's, as with near-OOD images
/// (CIFAR-100, Tiny ImageNet), but not their objects.
pub const DERIVED_KINDS: [&str; 3] = ["jigsaw", "mosaic", "zoom"];

/// `count` derived outliers of `kinds` (cycling) from images `idx` of `set`, seeded; the label
/// is the kind's index in `kinds`.
pub fn derived(kinds: &[&str], set: &ImageSet, idx: &[usize], count: usize, seed: u64) -> anyhow::Result<ImageSet> {
    anyhow::ensure!(!idx.is_empty(), "no source images for derived outliers");
    if let Some(kind) = kinds.iter().find(|k| !DERIVED_KINDS.contains(k)) {
        anyhow::bail!("unknown derived outlier kind {kind:?}; known: {}", DERIVED_KINDS.join(", "));
    }
    let mut rng = Rng::new(seed);
    let mut pixels = Vec::with_capacity(count * IMAGE_VALUES);
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let kind = i % kinds.len();
        let mut source = || set.image(idx[rng.below(idx.len())]);
        let image = match kinds[kind] {
            "jigsaw" => jigsaw(source(), &mut rng),
            "mosaic" => mosaic([source(), source(), source(), source()]),
            _ => zoom(source(), &mut rng),
        };
        pixels.extend(image);
        labels.push(kind as u16);
    }
    Ok(ImageSet { pixels, labels, class_names: kinds.iter().map(|k| k.to_string()).collect() })
}

/// The value at channel `c`, row `y`, column `x` of a CHW image.
fn at(image: &[u8], c: usize, y: usize, x: usize) -> u8 {
    image[c * S * S + y * S + x]
}

fn jigsaw(image: &[u8], rng: &mut Rng) -> Vec<u8> {
    const GRID: usize = 4;
    const P: usize = S / GRID;
    let mut order: Vec<usize> = (0..GRID * GRID).collect();
    rng.shuffle(&mut order);
    if order.iter().enumerate().all(|(i, &o)| i == o) {
        order.swap(0, 1);
    }
    let mut out = vec![0u8; IMAGE_VALUES];
    for (to, &from) in order.iter().enumerate() {
        let ((ty, tx), (fy, fx)) = ((to / GRID * P, to % GRID * P), (from / GRID * P, from % GRID * P));
        for c in 0..3 {
            for y in 0..P {
                for x in 0..P {
                    out[c * S * S + (ty + y) * S + tx + x] = at(image, c, fy + y, fx + x);
                }
            }
        }
    }
    out
}

fn mosaic(images: [&[u8]; 4]) -> Vec<u8> {
    const H: usize = S / 2;
    let mut out = vec![0u8; IMAGE_VALUES];
    for (q, image) in images.iter().enumerate() {
        let (oy, ox) = (q / 2 * H, q % 2 * H);
        for c in 0..3 {
            for y in 0..H {
                for x in 0..H {
                    let sum: u32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|&(dy, dx)| at(image, c, 2 * y + dy, 2 * x + dx) as u32)
                        .sum();
                    out[c * S * S + (oy + y) * S + ox + x] = ((sum + 2) / 4) as u8;
                }
            }
        }
    }
    out
}

fn zoom(image: &[u8], rng: &mut Rng) -> Vec<u8> {
    let k = 8 + rng.below(9);
    let (oy, ox) = (rng.below(S - k + 1), rng.below(S - k + 1));
    let mut out = vec![0u8; IMAGE_VALUES];
    // Pixel centres of the output mapped into the crop, clamped at its edges.
    let coord = |i: usize| (((i as f32 + 0.5) * k as f32 / S as f32 - 0.5).max(0.0)).min((k - 1) as f32);
    for y in 0..S {
        let (fy, ty) = (coord(y).floor() as usize, coord(y).fract());
        let y1 = (fy + 1).min(k - 1);
        for x in 0..S {
            let (fx, tx) = (coord(x).floor() as usize, coord(x).fract());
            let x1 = (fx + 1).min(k - 1);
            for c in 0..3 {
                let v = |yy: usize, xx: usize| at(image, c, oy + yy, ox + xx) as f32;
                let top = v(fy, fx) * (1.0 - tx) + v(fy, x1) * tx;
                let bottom = v(y1, fx) * (1.0 - tx) + v(y1, x1) * tx;
                out[c * S * S + y * S + x] = (top * (1.0 - ty) + bottom * ty).round() as u8;
            }
        }
    }
    out
}

/// Appends the `extra` training outliers to `outliers`, whose first `training` images are the
/// real training outliers: synthetic images (half recoloured copies of those training outliers,
/// half procedural images of the training families) and derived ones (jigsaw and mosaic images
/// of the in-distribution training images `train.1` of `train.0`). Seeded by `seed`; returns the
/// indices of the images added.
pub fn add_training_outliers(
    outliers: &mut ImageSet,
    training: usize,
    extra: &crate::train::ExtraOutliers,
    train: (&ImageSet, &[usize]),
    seed: u64,
) -> anyhow::Result<std::ops::Range<usize>> {
    let (synthetic, derived_count) = (extra.synthetic_outliers, extra.derived_outliers);
    let first = outliers.len();
    if synthetic > 0 {
        anyhow::ensure!(training > 0, "recoloured outliers need training outliers to recolour");
        let recoloured_idx: Vec<usize> = (0..synthetic / 2).map(|k| k % training).collect();
        let copies = recoloured(outliers, &recoloured_idx, seed ^ 0xC010);
        outliers.append(copies);
        outliers.append(procedural(&TRAIN_FAMILIES, synthetic - recoloured_idx.len(), seed ^ 0x5147));
    }
    if derived_count > 0 {
        outliers.append(derived(&["jigsaw", "mosaic"], train.0, train.1, derived_count, seed ^ 0xD371)?);
    }
    Ok(first..outliers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_and_spread(set: &ImageSet, i: usize) -> (f32, f32) {
        let img = set.image(i);
        let mean = img.iter().map(|&v| v as f32).sum::<f32>() / img.len() as f32;
        let var = img.iter().map(|&v| (v as f32 - mean).powi(2)).sum::<f32>() / img.len() as f32;
        (mean, var.sqrt())
    }

    #[test]
    fn every_family_draws_distinct_seeded_images() {
        let families: Vec<&str> = TRAIN_FAMILIES.iter().chain(&VAL_FAMILIES).copied().collect();
        let set = procedural(&families, families.len() * 4, 3);
        assert_eq!(set.len(), families.len() * 4);
        assert_eq!(set.pixels.len(), set.len() * IMAGE_VALUES);
        // Same seed, same images; another seed, other images.
        assert_eq!(procedural(&families, families.len(), 3).pixels, set.pixels[..families.len() * IMAGE_VALUES]);
        assert_ne!(procedural(&families, families.len(), 4).pixels, set.pixels[..families.len() * IMAGE_VALUES]);
        for (f, name) in families.iter().enumerate() {
            let images: Vec<&[u8]> = (0..4).map(|k| set.image(k * families.len() + f)).collect();
            assert!(images.windows(2).any(|w| w[0] != w[1]), "{name}: four identical images");
            assert_eq!(set.labels[f], f as u16);
        }
        // Families other than flat colours have structure inside the image.
        for k in 0..4 {
            let i = k * families.len() + families.iter().position(|&f| f == "stripes").unwrap();
            assert!(mean_and_spread(&set, i).1 > 1.0, "stripes without contrast");
        }
    }

    /// The handwriting stand-in: gray, light ink on a dark ground, the ink away from the border
    /// (centred, as scanned digits are), unlike the training strokes.
    #[test]
    fn pen_curves_are_light_centred_curves_on_a_dark_ground() {
        let set = procedural(&["pen-curves"], 32, 7);
        for i in 0..set.len() {
            let img = set.image(i);
            let plane = &img[..S * S];
            assert!(plane == &img[S * S..2 * S * S] && plane == &img[2 * S * S..], "image {i} is not gray");
            let inked = plane.iter().filter(|&&v| v >= 200).count();
            assert!((10..S * S / 2).contains(&inked), "image {i}: {inked} pixels of ink");
            let mut border = (0..S * S).filter(|p| [p % S, p / S].iter().any(|c| !(2..S - 2).contains(c)));
            assert!(border.all(|p| plane[p] <= 26), "image {i}: ink at the border");
        }
    }

    #[test]
    fn recolouring_keeps_the_content_and_changes_the_colours() {
        let source = procedural(&["gradient"], 6, 1);
        let idx: Vec<usize> = (0..6).collect();
        let out = recoloured(&source, &idx, 9);
        assert_eq!(out.len(), 6);
        for i in 0..6 {
            let (a, b) = (source.image(i), out.image(i));
            let mut sorted_a = a.to_vec();
            sorted_a.sort();
            let mut sorted_b = b.to_vec();
            sorted_b.sort();
            let gray = (0..S * S).all(|p| b[p] == b[S * S + p] && b[p] == b[2 * S * S + p]);
            let inverted = a.iter().zip(b).all(|(x, y)| *x == 255 - *y);
            // Grayscale, the negative, or the same values in other channels.
            assert!(gray || inverted || sorted_a == sorted_b, "image {i} is none of the recolourings");
        }
    }

    #[test]
    fn derived_outliers_rearrange_their_sources() {
        let source = procedural(&["shapes", "gradient"], 6, 2);
        let idx: Vec<usize> = (0..6).collect();
        let out = derived(&DERIVED_KINDS, &source, &idx, 12, 5).unwrap();
        assert_eq!((out.len(), out.labels[..3].to_vec()), (12, vec![0, 1, 2]));
        let sorted = |image: &[u8]| {
            let mut v = image.to_vec();
            v.sort();
            v
        };
        let half = |image: &[u8], c: usize, y: usize, x: usize| {
            let sum: u32 =
                [(0, 0), (0, 1), (1, 0), (1, 1)].iter().map(|&(a, b)| at(image, c, 2 * y + a, 2 * x + b) as u32).sum();
            ((sum + 2) / 4) as u8
        };
        for i in 0..out.len() {
            let image = out.image(i);
            assert!(idx.iter().all(|&j| source.image(j) != image), "image {i} is a copy of its source");
            match DERIVED_KINDS[out.labels[i] as usize] {
                // The same values as one source, moved.
                "jigsaw" => assert!(idx.iter().any(|&j| sorted(source.image(j)) == sorted(image)), "jigsaw {i}"),
                // Each quadrant is one source at half size.
                "mosaic" => {
                    for (qy, qx) in [(0, 0), (0, 16), (16, 0), (16, 16)] {
                        let matches = |j: usize| {
                            (0..3).all(|c| {
                                (0..16).all(|y| {
                                    (0..16).all(|x| at(image, c, qy + y, qx + x) == half(source.image(j), c, y, x))
                                })
                            })
                        };
                        assert!(idx.iter().any(|&j| matches(j)), "mosaic {i}, quadrant at ({qy}, {qx})");
                    }
                }
                // Interpolated: no value outside the sources' range.
                _ => {
                    let (lo, hi) = (source.pixels.iter().min().unwrap(), source.pixels.iter().max().unwrap());
                    assert!(image.iter().all(|v| v >= lo && v <= hi), "zoom {i}");
                }
            }
        }
        // A flat image stays flat when enlarged.
        let flat = ImageSet { pixels: vec![77; IMAGE_VALUES], labels: vec![0], class_names: vec![] };
        assert!(derived(&["zoom"], &flat, &[0], 3, 1).unwrap().pixels.iter().all(|&v| v == 77));
        let err = derived(&["zoom", "swirl"], &flat, &[0], 3, 1).unwrap_err().to_string();
        assert!(err.contains("swirl") && err.contains("jigsaw"), "{err}");
    }
}
