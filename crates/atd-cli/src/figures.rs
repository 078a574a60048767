//! The report's figures as PNGs (plotters): score histograms clean vs attacked (paper Fig. 2),
//! ROC curves, and AUROC against eps (paper Fig. 1). Text needs a TrueType font: DejaVu Sans
//! from the system (Debian/Ubuntu: fonts-dejavu-core) or the file named by ATD_FONT.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 420;
/// Colours: in-distribution blue, OOD orange; attacked versions darker.
const IN_CLEAN: RGBColor = RGBColor(107, 174, 214);
const IN_ATTACKED: RGBColor = RGBColor(8, 69, 148);
const OUT_CLEAN: RGBColor = RGBColor(253, 174, 107);
const OUT_ATTACKED: RGBColor = RGBColor(166, 54, 3);
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Register the font for every figure; call before long computations so that a missing font
/// fails fast instead of after an hour of attacks.
pub fn init_font() -> anyhow::Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("ATD_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            format!(
                "no TrueType font for the figures: install fonts-dejavu-core or set ATD_FONT (looked at {candidates:?})"
            )
        })?;
        let bytes: &'static [u8] =
            Box::leak(std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable font", path.display()))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e:?}")
}

/// Draw into an RGB buffer and save it as PNG.
fn save_png(
    path: &Path,
    width: u32,
    height: u32,
    draw: impl FnOnce(DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    init_font()?;
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(root.clone())?;
        root.present().map_err(err)?;
    }
    image::RgbImage::from_raw(width, height, buffer)
        .expect("buffer of the right size")
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Normalised histogram of `values` over `bins` equal bins of `[lo, hi]`, as a step line.
fn histogram_steps(values: &[f32], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let width = (hi - lo).max(1e-12) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let k = (((v as f64 - lo) / width) as isize).clamp(0, bins as isize - 1) as usize;
        counts[k] += 1;
    }
    let n = values.len().max(1) as f64;
    let mut steps = vec![(lo, 0.0)];
    for (k, c) in counts.iter().enumerate() {
        let density = *c as f64 / n;
        steps.push((lo + k as f64 * width, density));
        steps.push((lo + (k + 1) as f64 * width, density));
    }
    steps.push((hi, 0.0));
    steps
}

/// One histogram panel with labelled series.
fn histogram_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    caption: &str,
    range: (f64, f64),
    series: &[(&str, &[f32], RGBColor)],
) -> anyhow::Result<()> {
    const BINS: usize = 40;
    let lines: Vec<Vec<(f64, f64)>> =
        series.iter().map(|(_, v, _)| histogram_steps(v, range.0, range.1, BINS)).collect();
    let top = lines.iter().flatten().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(range.0..range.1, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("detector score (higher = in-distribution)")
        .y_desc("fraction")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for ((label, _, colour), line) in series.iter().zip(lines) {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(line, colour.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)
}

/// Paper Fig. 2: the score distributions of in- and out-of-distribution images, clean (left)
/// and with both attacked (right).
pub fn score_histograms(
    path: &Path,
    title: &str,
    in_clean: &[f32],
    in_attacked: &[f32],
    out_clean: &[f32],
    out_attacked: &[f32],
) -> anyhow::Result<()> {
    let all = in_clean.iter().chain(in_attacked).chain(out_clean).chain(out_attacked);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v as f64), hi.max(v as f64)));
    let range = if lo < hi { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
    save_png(path, WIDTH, HEIGHT, |root| {
        let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
        let (left, right) = root.split_horizontally(WIDTH / 2);
        histogram_panel(
            &left,
            "clean",
            range,
            &[("in, clean", in_clean, IN_CLEAN), ("OOD, clean", out_clean, OUT_CLEAN)],
        )?;
        histogram_panel(
            &right,
            "in and OOD attacked",
            range,
            &[("in, attacked", in_attacked, IN_ATTACKED), ("OOD, attacked", out_attacked, OUT_ATTACKED)],
        )
    })
}

/// Points (FPR, TPR) of the ROC curve, in-distribution as positives.
pub fn roc_points(in_scores: &[f32], out_scores: &[f32]) -> Vec<(f64, f64)> {
    let mut all: Vec<(f32, bool)> =
        in_scores.iter().map(|&s| (s, true)).chain(out_scores.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (p, n) = (in_scores.len().max(1) as f64, out_scores.len().max(1) as f64);
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for (k, &(score, positive)) in all.iter().enumerate() {
        if positive {
            tp += 1.0
        } else {
            fp += 1.0
        }
        // One point per distinct threshold.
        if all.get(k + 1).is_none_or(|next| next.0 != score) {
            points.push((fp / n, tp / p));
        }
    }
    points
}

/// A chart of labelled lines over [0, x_max] x [0, 1] with a grey reference line.
struct LineFigure<'a> {
    size: (u32, u32),
    title: &'a str,
    x_max: f64,
    axes: (&'a str, &'a str),
    reference: [(f64, f64); 2],
    markers: bool,
    legend: SeriesLabelPosition,
}

impl LineFigure<'_> {
    fn save(self, path: &Path, lines: Vec<(String, Vec<(f64, f64)>)>) -> anyhow::Result<()> {
        save_png(path, self.size.0, self.size.1, |root| {
            let mut chart = ChartBuilder::on(&root)
                .caption(self.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..self.x_max, 0.0..1.0)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(self.axes.0)
                .y_desc(self.axes.1)
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(err)?;
            chart.draw_series(LineSeries::new(self.reference.to_vec(), BLACK.mix(0.3))).map_err(err)?;
            for (k, (label, points)) in lines.into_iter().enumerate() {
                let colour = PALETTE[k % PALETTE.len()];
                let marker = if self.markers { 3 } else { 0 };
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)).point_size(marker))
                    .map_err(err)?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(self.legend)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(err)
        })
    }
}

/// ROC curves, one per labelled (in scores, out scores) pair.
pub fn roc_curves(path: &Path, title: &str, curves: &[(String, Vec<f32>, Vec<f32>)]) -> anyhow::Result<()> {
    let lines = curves
        .iter()
        .map(|(label, in_scores, out_scores)| {
            let auroc = atd_core::metrics::auroc(in_scores, out_scores);
            (format!("{label} (AUROC {auroc:.3})"), roc_points(in_scores, out_scores))
        })
        .collect();
    LineFigure {
        size: (520, 480),
        title,
        x_max: 1.0,
        axes: ("false positive rate (OOD called in)", "true positive rate (in called in)"),
        reference: [(0.0, 0.0), (1.0, 1.0)],
        markers: false,
        legend: SeriesLabelPosition::LowerRight,
    }
    .save(path, lines)
}

/// Paper Fig. 1: AUROC against eps (in 1/255 units), one line per detector.
pub fn auroc_vs_eps(path: &Path, title: &str, series: &[(String, Vec<(f64, f64)>)]) -> anyhow::Result<()> {
    let x_max = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(1.0, f64::max);
    LineFigure {
        size: (620, 440),
        title,
        x_max,
        axes: ("eps (x 1/255)", "In-and-Out AUROC"),
        reference: [(0.0, 0.5), (x_max, 0.5)],
        markers: true,
        legend: SeriesLabelPosition::UpperRight,
    }
    .save(path, series.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_area_under_the_roc_points_is_the_auroc() {
        // Ties inside and across the two sets; AUROC counts cross-set ties as half.
        let in_scores = [0.9, 0.8, 0.8, 0.5, 0.3, 0.3];
        let out_scores = [0.8, 0.6, 0.3, 0.2, 0.1];
        let points = roc_points(&in_scores, &out_scores);
        assert_eq!(points.first(), Some(&(0.0, 0.0)));
        assert_eq!(points.last(), Some(&(1.0, 1.0)));
        let area: f64 = points.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        let auroc = atd_core::metrics::auroc(&in_scores, &out_scores);
        assert!((area - auroc).abs() < 1e-12, "trapezoids {area} vs AUROC {auroc}");
    }
}
