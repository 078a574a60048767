//! `atd eval`: a detector under end-to-end PGD in the paper's four settings. Clean: nothing
//! attacked; In: in-distribution images pushed towards OOD (score down); Out: OOD images pushed
//! towards in (score up); In-and-Out: both. AUROC, FPR at 95% TPR, AUPR-In and AUPR-Out per
//! OOD set and averaged.

use atd_core::data::ImageSet;
use atd_core::metrics::OodMetrics;
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::pgd::{PgdConfig, pgd};
use crate::{Detector, Model, dataset, model::to_vec};

pub const SETTINGS: [&str; 4] = ["Clean", "In", "Out", "In-and-Out"];

#[derive(Clone, Debug, Serialize)]
pub struct SetResult {
    pub name: String,
    pub images: usize,
    /// One entry per setting, in the order of `SETTINGS`.
    pub metrics: Vec<OodMetrics>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub detector: Detector,
    pub in_images: usize,
    pub eps: f32,
    pub steps: usize,
    pub restarts: usize,
    pub sets: Vec<SetResult>,
    /// Mean over the OOD sets, per setting.
    pub average: Vec<OodMetrics>,
}

/// Clean and attacked scores of `set` (all of it), pushed down (`towards_out`) or up.
pub fn scores_under_attack(model: &Model, detector: Detector, set: &ImageSet, towards_out: bool, cfg: &PgdConfig, device: &Device, bar: &indicatif::ProgressBar) -> (Vec<f32>, Vec<f32>) {
    let idx: Vec<usize> = (0..set.len()).collect();
    let (mut clean, mut attacked) = (Vec::new(), Vec::new());
    for (b, chunk) in dataset::batches(&idx, 128).enumerate() {
        let x = dataset::images(set, chunk, None, device);
        clean.extend(to_vec(model.score(detector, x.clone())));
        let objective = |x: Tensor<4>| {
            let z = model.score_logit(detector, x);
            if towards_out { z.neg() } else { z }
        };
        let cfg = PgdConfig { seed: cfg.seed.wrapping_add(b as u64 * 7919), ..cfg.clone() };
        let adv = if cfg.steps == 0 || cfg.eps == 0.0 { x } else { pgd(&objective, &x, &cfg, |_, _| {}).adversarial };
        attacked.extend(to_vec(model.score(detector, adv)));
        bar.inc(chunk.len() as u64);
    }
    (clean, attacked)
}

fn mean(all: &[&OodMetrics]) -> OodMetrics {
    let n = all.len().max(1) as f64;
    OodMetrics {
        auroc: all.iter().map(|m| m.auroc).sum::<f64>() / n,
        fpr_at_95_tpr: all.iter().map(|m| m.fpr_at_95_tpr).sum::<f64>() / n,
        aupr_in: all.iter().map(|m| m.aupr_in).sum::<f64>() / n,
        aupr_out: all.iter().map(|m| m.aupr_out).sum::<f64>() / n,
    }
}

/// Evaluate `detector` of `model` (in eval mode) on in-distribution `in_set` against each OOD set.
pub fn evaluate(model: &Model, detector: Detector, in_set: &ImageSet, out_sets: &[(String, ImageSet)], cfg: &PgdConfig, device: &Device) -> Evaluation {
    let total = in_set.len() + out_sets.iter().map(|(_, s)| s.len()).sum::<usize>();
    let bar = crate::progress::bar(total as u64, &format!("{} under PGD-{}", detector.name(), cfg.steps));
    let (in_clean, in_adv) = scores_under_attack(model, detector, in_set, true, cfg, device, &bar);
    let mut sets = Vec::new();
    for (name, set) in out_sets {
        let (out_clean, out_adv) = scores_under_attack(model, detector, set, false, cfg, device, &bar);
        let metrics = vec![
            OodMetrics::compute(&in_clean, &out_clean),
            OodMetrics::compute(&in_adv, &out_clean),
            OodMetrics::compute(&in_clean, &out_adv),
            OodMetrics::compute(&in_adv, &out_adv),
        ];
        sets.push(SetResult { name: name.clone(), images: set.len(), metrics });
    }
    bar.finish_and_clear();
    let average = (0..SETTINGS.len()).map(|k| mean(&sets.iter().map(|s| &s.metrics[k]).collect::<Vec<_>>())).collect();
    Evaluation { detector, in_images: in_set.len(), eps: cfg.eps, steps: cfg.steps, restarts: cfg.restarts, sets, average }
}

impl Evaluation {
    /// A markdown table: one row per OOD set (and the average), AUROC / FPR@95 per setting.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} on {} in-distribution images, PGD-{} at eps {:.2}/255, {} restart(s); AUROC / FPR@95TPR / AUPR-In / AUPR-Out\n\n| OOD set | n |",
            self.detector.name(), self.in_images, self.steps, self.eps * 255.0, self.restarts
        );
        for setting in SETTINGS {
            s += &format!(" {setting} |");
        }
        s += "\n|---|---|";
        s += &"---|".repeat(SETTINGS.len());
        let cell = |m: &OodMetrics| format!(" {:.3} / {:.3} / {:.3} / {:.3} |", m.auroc, m.fpr_at_95_tpr, m.aupr_in, m.aupr_out);
        for set in &self.sets {
            s += &format!("\n| {} | {} |", set.name, set.images);
            for m in &set.metrics {
                s += &cell(m);
            }
        }
        s += "\n| **average** | |";
        for m in &self.average {
            s += &cell(m);
        }
        s + "\n"
    }
}
