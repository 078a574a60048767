//! `atd eval`: a detector under attack in the paper's four settings. Clean: nothing attacked;
//! In: in-distribution images pushed towards OOD (score down); Out: OOD images pushed towards
//! in (score up); In-and-Out: both. AUROC, FPR at 95% TPR, AUPR-In and AUPR-Out per OOD set and
//! averaged, and the classifier's accuracy on the in-distribution images, clean and attacked.
//! Several attacks can run on the same images; their per-image worst case is reported too.

use atd_core::attack::{Direction, Setting};
use atd_core::data::ImageSet;
use atd_core::metrics::OodMetrics;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::eval_cache::CachedScores;
pub use crate::eval_cache::EvalCache;
use crate::model::{argmax_rows, to_vec};
use crate::pgd::{PgdConfig, apgd, fgsm, pgd, sign_noise};
use crate::{Detector, Model, dataset};

/// How the perturbations are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    /// End-to-end PGD on the detector score.
    Pgd,
    /// End-to-end APGD on the detector score.
    Apgd,
    /// One FGSM step on the detector score (of the source model, for transfer).
    Fgsm,
    /// Random +-eps per pixel: no gradient at all.
    Noise,
    /// PGD on the classifier's cross-entropy instead of the detector (paper Table 4): true labels
    /// for in-distribution images, the clean prediction for OOD images.
    Classification,
}

/// One attack: its kind, budget, and the model whose gradients craft it (the evaluated one,
/// or another for a transfer attack).
#[derive(Clone)]
pub struct Attack<'a> {
    pub kind: AttackKind,
    pub cfg: PgdConfig,
    pub source: Option<(&'a Model, Detector, String)>,
}

impl<'a> Attack<'a> {
    pub fn new(kind: AttackKind, cfg: PgdConfig) -> Self {
        Self { kind, cfg, source: None }
    }

    /// FGSM on `detector` of `model` (named `name` in reports), transferred to the evaluated one.
    pub fn transfer(model: &'a Model, detector: Detector, name: String, eps: f32) -> Self {
        Self { kind: AttackKind::Fgsm, cfg: PgdConfig::new(eps, 1), source: Some((model, detector, name)) }
    }

    /// What the attack is, without its budget (an evaluation keeps eps beside it).
    pub fn name(&self) -> String {
        let restarts = if self.cfg.attack.restarts > 1 {
            format!(" x{} restarts", self.cfg.attack.restarts)
        } else {
            String::new()
        };
        let best = if self.cfg.best_of_steps { ", best of steps" } else { "" };
        let own = match self.kind {
            AttackKind::Pgd => format!("PGD-{}{restarts}{best}", self.cfg.attack.steps),
            AttackKind::Apgd => format!("APGD-{}{restarts}", self.cfg.attack.steps),
            AttackKind::Fgsm => "FGSM".to_string(),
            AttackKind::Noise => "random sign noise".to_string(),
            AttackKind::Classification => format!("PGD-{}{restarts}{best} on the classifier", self.cfg.attack.steps),
        };
        match self.source_label() {
            Some(source) => format!("{own} transferred from {source}"),
            None => own,
        }
    }

    /// The model and detector a transferred attack is crafted on, as reports name them.
    pub fn source_label(&self) -> Option<String> {
        self.source.as_ref().map(|(_, d, name)| format!("{name} ({})", d.name()))
    }

    /// Perturb `x` against `target`'s detector (or the source's), pushing its score `direction`:
    /// in-distribution images out, OOD images in.
    pub fn perturb(
        &self,
        target: &Model,
        detector: Detector,
        x: &Tensor<4>,
        labels: &[usize],
        direction: Direction,
    ) -> Tensor<4> {
        let cfg = &self.cfg;
        if cfg.attack.eps == 0.0 || (cfg.attack.steps == 0 && self.kind != AttackKind::Noise) {
            return x.clone();
        }
        let (model, detector) = match &self.source {
            Some((m, d, _)) => (*m, *d),
            None => (target, detector),
        };
        let on_score = |x: Tensor<4>| model.score_logit(detector, x) * direction.sign();
        match self.kind {
            AttackKind::Pgd => pgd(&on_score, x, cfg, |_, _| {}).adversarial,
            AttackKind::Apgd => apgd(&on_score, x, cfg, |_, _| {}).adversarial,
            AttackKind::Fgsm => fgsm(&on_score, x, cfg),
            AttackKind::Noise => sign_noise(x, cfg.attack.eps, cfg.attack.seed),
            AttackKind::Classification => {
                // Away from the true class (in-distribution) or from the predicted one (OOD).
                let targets: Vec<usize> = match direction {
                    Direction::Out => labels.to_vec(),
                    Direction::In => predictions(model, x.clone()),
                };
                pgd(&|x: Tensor<4>| model.cross_entropy(x, &targets), x, cfg, |_, _| {}).adversarial
            }
        }
    }
}

fn predictions(model: &Model, x: Tensor<4>) -> Vec<usize> {
    argmax_rows(model.logits(x))
}

/// Scores (and, for in-distribution images with labels, correctness) clean and attacked.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SetScores {
    pub name: String,
    pub clean: Vec<f32>,
    pub attacked: Vec<f32>,
    pub correct_clean: Vec<bool>,
    pub correct_attacked: Vec<bool>,
}

impl SetScores {
    /// The per-image worst case of two attacks on the same images: the lower score for
    /// in-distribution images, the higher for OOD.
    fn worst(&self, other: &SetScores, in_distribution: bool) -> SetScores {
        let pick = |a: &f32, b: &f32| if in_distribution { a.min(*b) } else { a.max(*b) };
        SetScores {
            attacked: self.attacked.iter().zip(&other.attacked).map(|(a, b)| pick(a, b)).collect(),
            correct_attacked: Vec::new(),
            ..self.clone()
        }
    }
}

/// Clean and attacked scores of `set` (all of it).
pub fn scores_under_attack(
    model: &Model,
    detector: Detector,
    set: &ImageSet,
    direction: Direction,
    attack: &Attack,
    device: &Device,
    bar: &indicatif::ProgressBar,
) -> SetScores {
    let idx: Vec<usize> = (0..set.len()).collect();
    let with_accuracy = direction == Direction::Out && model.card.classifier.is_some();
    let mut s = SetScores::default();
    for (b, chunk) in dataset::batches(&idx, 128).enumerate() {
        let x = dataset::images(set, chunk, None, device);
        let labels = dataset::labels(set, chunk);
        s.clean.extend(to_vec(model.score(detector, x.clone())));
        let batch_attack = Attack {
            cfg: PgdConfig {
                attack: attack
                    .cfg
                    .attack
                    .clone()
                    .with_seed(attack.cfg.attack.seed.wrapping_add((b as u32).wrapping_mul(7919))),
                ..attack.cfg.clone()
            },
            ..attack.clone()
        };
        let adv = batch_attack.perturb(model, detector, &x, &labels, direction);
        s.attacked.extend(to_vec(model.score(detector, adv.clone())));
        if with_accuracy {
            s.correct_clean.extend(predictions(model, x).iter().zip(&labels).map(|(p, y)| p == y));
            s.correct_attacked.extend(predictions(model, adv).iter().zip(&labels).map(|(p, y)| p == y));
        }
        bar.inc(chunk.len() as u64);
    }
    s
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

fn fraction(flags: &[bool]) -> Option<f64> {
    (!flags.is_empty()).then(|| flags.iter().filter(|&&c| c).count() as f64 / flags.len() as f64)
}

#[derive(Clone, Debug, Serialize)]
pub struct SetResult {
    pub name: String,
    pub images: usize,
    /// One entry per setting, in the order of `Setting::ALL`.
    pub metrics: Vec<OodMetrics>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub detector: Detector,
    /// The attack (`Attack::name`), its budget in `eps`.
    pub attack: String,
    /// For a transferred attack: the model and detector it was crafted on.
    pub transferred_from: Option<String>,
    pub in_images: usize,
    pub eps: f32,
    pub sets: Vec<SetResult>,
    /// Mean over the OOD sets, per setting.
    pub average: Vec<OodMetrics>,
    /// Classifier accuracy on the in-distribution images, clean and attacked (when the file has
    /// a classifier and the attack is a single one).
    pub accuracy_clean: Option<f64>,
    pub accuracy_attacked: Option<f64>,
    /// Wall time of the attacks and scoring behind these numbers.
    pub seconds: f64,
    /// The scores behind the numbers (for figures; not written to JSON).
    #[serde(skip)]
    pub scores: (SetScores, Vec<SetScores>),
}

impl Evaluation {
    pub fn from_scores(
        detector: Detector,
        attack: String,
        eps: f32,
        in_scores: SetScores,
        out_scores: Vec<SetScores>,
    ) -> Self {
        let sets: Vec<SetResult> = out_scores
            .iter()
            .map(|o| SetResult {
                name: o.name.clone(),
                images: o.clean.len(),
                metrics: Setting::ALL
                    .iter()
                    .map(|s| {
                        let inputs = if s.attacks_in() { &in_scores.attacked } else { &in_scores.clean };
                        let outliers = if s.attacks_out() { &o.attacked } else { &o.clean };
                        OodMetrics::compute(inputs, outliers)
                    })
                    .collect(),
            })
            .collect();
        let average = Setting::ALL
            .iter()
            .map(|k| mean(&sets.iter().map(|s| &s.metrics[k.index()]).collect::<Vec<_>>()))
            .collect();
        Self {
            detector,
            attack,
            transferred_from: None,
            in_images: in_scores.clean.len(),
            eps,
            sets,
            average,
            accuracy_clean: fraction(&in_scores.correct_clean),
            accuracy_attacked: fraction(&in_scores.correct_attacked),
            seconds: 0.0,
            scores: (in_scores, out_scores),
        }
    }

    /// The attack with its budget, e.g. "PGD-100, eps 8.0/255".
    pub fn attack_with_budget(&self) -> String {
        format!("{}, eps {:.1}/255", self.attack, self.eps * 255.0)
    }

    /// Mean AUROC over the OOD sets in `setting`.
    pub fn auroc(&self, setting: Setting) -> f64 {
        self.average[setting.index()].auroc
    }

    /// The per-image worst case of two evaluations of the same detector on the same images.
    pub fn worst_with(&self, other: &Evaluation) -> Evaluation {
        let (in_a, outs_a) = &self.scores;
        let (in_b, outs_b) = &other.scores;
        let in_worst = SetScores { correct_clean: Vec::new(), ..in_a.worst(in_b, true) };
        let outs = outs_a.iter().zip(outs_b).map(|(a, b)| a.worst(b, false)).collect();
        let mut worst = Evaluation::from_scores(
            self.detector,
            format!("worst case of {} and {}", self.attack, other.attack),
            self.eps,
            in_worst,
            outs,
        );
        worst.seconds = self.seconds + other.seconds;
        worst
    }

    /// A markdown table: one row per OOD set (and the average), AUROC / FPR@95 / AUPR-In /
    /// AUPR-Out per setting.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} on {} in-distribution images, {}; AUROC / FPR@95TPR / AUPR-In / AUPR-Out\n\n| OOD set | n |",
            self.detector.name(),
            self.in_images,
            self.attack_with_budget()
        );
        for setting in Setting::ALL {
            s += &format!(" {} |", setting.name());
        }
        s += "\n|---|---|";
        s += &"---|".repeat(Setting::ALL.len());
        let cell = |m: &OodMetrics| {
            format!(" {:.3} / {:.3} / {:.3} / {:.3} |", m.auroc, m.fpr_at_95_tpr, m.aupr_in, m.aupr_out)
        };
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
        s += "\n";
        if let (Some(clean), Some(attacked)) = (self.accuracy_clean, self.accuracy_attacked) {
            s += &format!(
                "\nclassifier accuracy on the in-distribution images: {clean:.3} clean, {attacked:.3} attacked\n"
            );
        }
        s
    }
}

/// The data one evaluation runs on, and where finished evaluations are kept (if anywhere).
pub struct EvalData<'a> {
    pub in_set: &'a ImageSet,
    pub out_sets: &'a [(String, ImageSet)],
    pub cache: Option<&'a EvalCache>,
}

impl EvalData<'_> {
    pub fn images(&self) -> usize {
        self.in_set.len() + self.out_sets.iter().map(|(_, s)| s.len()).sum::<usize>()
    }
}

/// Evaluate `detector` of `model` (in eval mode) under one attack.
pub fn evaluate(model: &Model, detector: Detector, data: &EvalData, attack: &Attack, device: &Device) -> Evaluation {
    let name = attack.name();
    let cache = data.cache.and_then(|c| match c.evaluation_key(model, detector, attack) {
        Ok(key) => Some((c, key)),
        Err(e) => {
            eprintln!("warning: not caching this evaluation: {e:#}");
            None
        }
    });
    let bar = crate::progress::bar(data.images() as u64, &format!("{} under {name}", detector.name()));
    let (mut seconds, mut cached_sets) = (0.0, 0);
    let mut scores = |set_name: &str, set: &ImageSet, direction: Direction| -> SetScores {
        let entry = cache.as_ref().map(|(c, key)| (c, c.entry(key, set_name, set, direction)));
        if let Some(hit) = entry.as_ref().and_then(|(c, entry)| c.read(entry)) {
            bar.inc(set.len() as u64);
            seconds += hit.seconds;
            cached_sets += 1;
            return hit.scores;
        }
        let started = std::time::Instant::now();
        let scores = SetScores {
            name: set_name.to_string(),
            ..scores_under_attack(model, detector, set, direction, attack, device, &bar)
        };
        let set_seconds = started.elapsed().as_secs_f64();
        if let Some((c, entry)) = &entry {
            c.write(entry, CachedScores { scores: scores.clone(), seconds: set_seconds });
        }
        seconds += set_seconds;
        scores
    };
    let in_scores = scores("in", data.in_set, Direction::Out);
    let outs: Vec<SetScores> = data.out_sets.iter().map(|(n, set)| scores(n, set, Direction::In)).collect();
    bar.finish_and_clear();
    let mut result = Evaluation::from_scores(detector, name, attack.cfg.attack.eps, in_scores, outs);
    result.seconds = seconds;
    result.transferred_from = attack.source_label();
    // A line per evaluation: what a log keeps when stderr is not a terminal (no bar).
    let sets = 1 + data.out_sets.len();
    let from_cache = match cached_sets {
        0 => String::new(),
        n if n == sets => " (all read from the cache)".to_string(),
        n => format!(" ({n} of its {sets} sets read from the cache)"),
    };
    eprintln!(
        "{} under {}: {} images in {:.0} s{from_cache}, In-and-Out AUROC {:.3}",
        detector.name(),
        result.attack_with_budget(),
        data.images(),
        result.seconds,
        result.auroc(Setting::InAndOut)
    );
    result
}

/// Evaluate under each attack, then (with more than one) their per-image worst case.
pub fn evaluate_all(
    model: &Model,
    detector: Detector,
    data: &EvalData,
    attacks: &[Attack],
    device: &Device,
) -> Vec<Evaluation> {
    let mut results: Vec<Evaluation> = attacks.iter().map(|a| evaluate(model, detector, data, a, device)).collect();
    if results.len() > 1 {
        let mut worst = results[1..].iter().fold(results[0].clone(), |acc, e| acc.worst_with(e));
        let names: Vec<&str> = results.iter().map(|e| e.attack.as_str()).collect();
        worst.attack = format!("per-image worst case of {}", names.join(" and "));
        results.push(worst);
    }
    results
}
