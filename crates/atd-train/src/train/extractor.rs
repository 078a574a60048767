//! `atd train extractor`: the feature extractor with its classifier head, trained by one of
//! standard training, Madry PGD adversarial training (AT), HAT (TRADES + helper examples), the
//! outlier-exposure family (OE, AOE, ALOE) on the Food-101 outliers, ATOM (an outlier class
//! trained on attacked outliers mined from a pool), or OSAD (AT with denoising blocks, a decoder
//! and rotation self-supervision).
//!
//! One file past the usual length: the eight methods share one step (their losses differ in a
//! few lines each), one recipe and one validation; a file per method would repeat the rest.

use std::path::{Path, PathBuf};

use atd_core::attack::AttackSpec;
use atd_core::card::{BaselineSpec, ExtractorSpec, ModelCard, OpenMaxSpec};
use atd_core::data::ImageSet;
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ExtraOutliers, RunOptions, Schedule, StepStats, Training, parse_decay, parse_fraction};
use crate::average;
use crate::detectors::cross_entropy;
use crate::model::{AtdNet, ImageGenerator, Model, argmax_rows, to_vec};
use crate::pgd::{Objective, PgdConfig, noisy_fgsm, pgd};
use crate::rng::Rng;
use crate::{dataset, synthetic};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Cross-entropy on clean (augmented) images.
    Standard,
    /// Madry et al.: cross-entropy on PGD adversarial examples.
    At,
    /// Helper-based adversarial training (Rade and Moosavi-Dezfooli 2022): TRADES KL + helper
    /// examples x + h (x_adv - x) labelled by a standard model, label smoothing.
    Hat,
    /// Outlier exposure: cross-entropy on in-distribution + uniform-label loss on outliers.
    Oe,
    /// OE with adversarial in-distribution images and clean outliers.
    Aoe,
    /// ALOE: OE with both in-distribution images and outliers attacked.
    Aloe,
    /// ATOM (Chen et al. 2021): a K+1-way classifier, cross-entropy on clean in-distribution
    /// images and on attacked outliers labelled as the extra class; each epoch's outliers are
    /// mined from the pool (Food-101 plus --synthetic-outliers and --derived-outliers) at a
    /// quantile of the current model's outlier score (informative outlier mining).
    Atom,
    /// OSAD (Shao et al. 2020): AT on an extractor with dual-attentive denoising blocks (after
    /// every stage but the first), plus a decoder reconstructing the clean image from the
    /// attacked image's features and a head predicting the rotation of rotated attacked images.
    Osad,
}

impl Method {
    fn attacks_in(self) -> bool {
        matches!(self, Method::At | Method::Hat | Method::Aoe | Method::Aloe | Method::Osad)
    }

    fn uses_outliers(self) -> bool {
        matches!(self, Method::Oe | Method::Aoe | Method::Aloe | Method::Atom)
    }
}

/// ATOM keeps a quarter of its pool each epoch (its paper mines 100k of 400k outliers).
const ATOM_MINED_FRACTION: f64 = 0.25;

/// OSAD's decoder width (DCGAN's w: 4w channels at 4x4) per feature dimension.
const OSAD_DECODER_WIDTH_PER_FEATURE: usize = 4;

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

fn default_atom_quantile() -> f64 {
    0.125
}

fn is_default_atom_quantile(q: &f64) -> bool {
    *q == default_atom_quantile()
}

/// Architecture presets (see `atd_core::card::ExtractorSpec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// PreAct ResNet, widths 16-32-64-128, one block per stage, ReLU: trains on a CPU.
    Small,
    /// The small preset at twice the width (32-64-128-256, 256-d features): ~4x the arithmetic.
    Wide,
    /// The paper's DeepMind PreActResNet-18 with Swish (needs a GPU to train).
    Preact18Swish,
    /// Two stages of widths 4-8: for tests only.
    Tiny,
}

impl Arch {
    pub fn spec(self) -> ExtractorSpec {
        match self {
            Arch::Small => ExtractorSpec::small(),
            Arch::Wide => ExtractorSpec::wide(),
            Arch::Preact18Swish => ExtractorSpec::preact_resnet18_swish(),
            Arch::Tiny => ExtractorSpec::tiny(),
        }
    }
}

/// The attack used during training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TrainAttack {
    /// L-infinity PGD with a uniform random start.
    Pgd,
    /// One random-start FGSM step of 1.25 eps (Wong et al. 2020): for small budgets.
    Fgsm,
    /// N-FGSM (de Jorge et al. 2022): noise of 2 eps, one step of eps (or the step size given),
    /// no projection onto the eps-ball; single-step training without catastrophic overfitting.
    Nfgsm,
}

#[derive(Clone, Debug, clap::Args, Serialize, Deserialize)]
pub struct ExtractorRecipe {
    #[arg(long, value_enum, default_value = "standard")]
    pub method: Method,
    #[arg(long, value_enum, default_value = "small")]
    pub arch: Arch,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Peak learning rate of SGD.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, value_enum, default_value = "one-cycle")]
    pub schedule: Schedule,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub nesterov: bool,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    /// Random crop (4-pixel zero padding) and horizontal flip.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub augment: bool,
    /// Attack radius (L-infinity), e.g. 8/255.
    #[arg(long, default_value = "8/255", value_parser = parse_fraction)]
    pub eps: f32,
    #[arg(long, value_enum, default_value = "pgd")]
    pub attack: TrainAttack,
    #[arg(long, default_value_t = 10)]
    pub attack_steps: usize,
    /// Step size of the training attack (default 2.5 eps / steps; 1.25 eps for FGSM; eps for
    /// N-FGSM).
    #[arg(long, value_parser = parse_fraction)]
    pub attack_step_size: Option<f32>,
    /// HAT: weight of the TRADES KL term.
    #[arg(long, default_value_t = 3.5)]
    pub beta: f32,
    /// HAT: weight of the helper-example term.
    #[arg(long, default_value_t = 0.5)]
    pub gamma: f32,
    /// HAT: helper examples are x + h (x_adv - x).
    #[arg(long, default_value_t = 2.0)]
    pub helper_h: f32,
    /// HAT: label smoothing of the clean cross-entropy.
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// HAT: a standardly trained model (weights file) that labels the helper examples.
    #[arg(long)]
    pub helper: Option<PathBuf>,
    /// OE family and ATOM: weight of the outlier loss (uniform label; ATOM: the outlier class).
    #[arg(long, default_value_t = 0.5)]
    pub oe_weight: f32,
    // ATOM's pool: the real outliers plus these.
    #[command(flatten)]
    #[serde(flatten)]
    pub extra_outliers: ExtraOutliers,
    /// ATOM: each epoch's outliers start at this quantile of the pool sorted from the most
    /// in-distribution-looking (the hardest, skipped as possibly in-distribution) to the easiest.
    #[arg(long, default_value_t = default_atom_quantile())]
    #[serde(default = "default_atom_quantile", skip_serializing_if = "is_default_atom_quantile")]
    pub atom_quantile: f64,
    /// OSAD: weight of the decoder's mean squared error (clean image from attacked features).
    #[arg(long, default_value_t = 1.0)]
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub reconstruction_weight: f32,
    /// OSAD: weight of the rotation self-supervision's cross-entropy.
    #[arg(long, default_value_t = 1.0)]
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub rotation_weight: f32,
    /// In-distribution training set inside the data pack (ImageFolder zip/folder or .bin).
    #[arg(long, default_value = "cifar10-train.zip")]
    pub train_set: String,
    /// Outliers for the OE family.
    #[arg(long, default_value = "food101-32.bin")]
    pub outliers: String,
    /// Training images held out for validation and model selection.
    #[arg(long, default_value_t = 5000)]
    pub val_size: usize,
    /// Validation images also evaluated under PGD-10 at --eps each epoch.
    #[arg(long, default_value_t = 500)]
    pub val_attack_size: usize,
    /// Use only the first N training images (after the validation split).
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep an exponential moving average of the weights and BatchNorm statistics with this
    /// decay (e.g. 0.999), warmed up over the first steps; validation, model selection and the
    /// exported file use the average, and the log also scores the live weights (live_val_*).
    #[arg(long, value_parser = parse_decay)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
}

impl ExtractorRecipe {
    fn attack_config(&self, seed: u64) -> PgdConfig {
        let spec = match self.attack {
            TrainAttack::Pgd => AttackSpec::new(self.eps, self.attack_steps),
            // Random-start FGSM (Wong et al. 2020): one step of 1.25 eps.
            TrainAttack::Fgsm => AttackSpec::new(self.eps, 1).with_step_size(1.25 * self.eps),
            TrainAttack::Nfgsm => AttackSpec::new(self.eps, 1).with_step_size(self.eps),
        };
        let spec = match self.attack_step_size {
            Some(step) => spec.with_step_size(step),
            None => spec,
        };
        spec.with_seed(seed as u32).into()
    }

    /// The training attack on `objective` from the clean images `x`.
    fn attack(&self, objective: &impl Objective, x: &Tensor<4>, seed: u64) -> Tensor<4> {
        let cfg = self.attack_config(seed);
        match self.attack {
            TrainAttack::Nfgsm => noisy_fgsm(objective, x, 2.0 * self.eps, cfg.attack.step_size(), cfg.attack.seed),
            TrainAttack::Pgd | TrainAttack::Fgsm => pgd(objective, x, &cfg, |_, _| {}).adversarial,
        }
    }
}

/// Per-sample cross-entropy against labels smoothed towards uniform by `smoothing`.
fn smooth_cross_entropy(logits: Tensor<2>, labels: &[usize], smoothing: f32) -> Tensor<1> {
    let hard = cross_entropy(logits.clone(), labels);
    if smoothing == 0.0 {
        return hard;
    }
    hard * (1.0 - smoothing) + uniform_cross_entropy(logits) * smoothing
}

/// Cross-entropy against the uniform label (the outlier-exposure loss), per sample.
fn uniform_cross_entropy(logits: Tensor<2>) -> Tensor<1> {
    let b = logits.dims()[0];
    log_softmax(logits, 1).mean_dim(1).reshape([b]).neg()
}

/// KL(p_clean || softmax(logits)) per sample, as TRADES' KLDivLoss(log_softmax(adv), p_clean).
fn kl_from(p_clean: Tensor<2>, logits: Tensor<2>) -> Tensor<1> {
    let b = logits.dims()[0];
    let log_p = p_clean.clone().clamp_min(1e-12).log();
    (p_clean * (log_p - log_softmax(logits, 1))).sum_dim(1).reshape([b])
}

/// Images `[B, C, H, W]` (square) turned by `k` quarter turns.
fn turn(x: Tensor<4>, k: usize) -> Tensor<4> {
    match k % 4 {
        0 => x,
        1 => x.swap_dims(2, 3).flip([3]),
        2 => x.flip([2, 3]),
        _ => x.swap_dims(2, 3).flip([2]),
    }
}

/// OSAD's self-supervision input: the k-th quarter of the batch turned by k quarter turns
/// (k = 0..3; the batch order is random, so are the groups), and each image's k.
fn quarter_turns(x: Tensor<4>) -> (Tensor<4>, Vec<usize>) {
    let n = x.dims()[0];
    let mut parts = Vec::new();
    let mut turns = Vec::with_capacity(n);
    for k in 0..4 {
        let (start, end) = (k * n / 4, (k + 1) * n / 4);
        if start == end {
            continue;
        }
        parts.push(turn(x.clone().narrow(0, start, end - start), k));
        turns.extend(std::iter::repeat_n(k, end - start));
    }
    (Tensor::cat(parts, 0), turns)
}

fn accuracy(logits: Tensor<2>, labels: &[usize]) -> f64 {
    let hits = argmax_rows(logits).iter().zip(labels).filter(|(p, y)| p == y).count();
    hits as f64 / labels.len().max(1) as f64
}

pub struct ExtractorTraining {
    recipe: ExtractorRecipe,
    model: Model,
    /// The moving average of the network, with `--ema`.
    average: Option<AtdNet>,
    optim: ModuleOptimizer,
    helper: Option<Model>,
    train: ImageSet,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    outliers: Option<ImageSet>,
    /// ATOM: the epoch whose outliers were mined, and their indices in `outliers` (shuffled).
    mined: Option<(usize, Vec<usize>)>,
    device: Device,
}

impl ExtractorTraining {
    pub fn new(recipe: ExtractorRecipe, data_dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let train = dataset::load_set(data_dir, &recipe.train_set)?;
        let (mut train_idx, val_idx) = dataset::split(train.len(), recipe.val_size, recipe.seed)?;
        if let Some(n) = recipe.train_limit {
            train_idx.truncate(n);
        }
        anyhow::ensure!(!val_idx.is_empty(), "--val-size must be at least 1 (model selection needs held-out images)");
        anyhow::ensure!(
            recipe.method == Method::Atom || recipe.extra_outliers.is_none(),
            "--synthetic-outliers and --derived-outliers extend ATOM's pool: use them with --method atom"
        );
        anyhow::ensure!((0.0..1.0).contains(&recipe.atom_quantile), "--atom-quantile must lie in [0, 1)");
        let mut outliers =
            recipe.method.uses_outliers().then(|| dataset::load_set(data_dir, &recipe.outliers)).transpose()?;
        if let Some(pool) = outliers.as_mut() {
            let real = pool.len();
            synthetic::add_training_outliers(pool, real, &recipe.extra_outliers, (&train, &train_idx), recipe.seed)?;
        }
        let helper = match (recipe.method, &recipe.helper) {
            (Method::Hat, Some(path)) => Some(Model::load(path, device)?),
            (Method::Hat, None) => anyhow::bail!("--method hat needs --helper <weights of a standardly trained model>"),
            _ => None,
        };
        let mut card = ModelCard::classifier(recipe.arch.spec());
        let classes = train.class_names.len().max(train.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
        card.classifier = Some(classes);
        card.class_names = if train.class_names.len() == classes {
            train.class_names.clone()
        } else if classes == 10 {
            atd_core::card::CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
        } else {
            (0..classes).map(|c| c.to_string()).collect()
        };
        if recipe.method == Method::Atom {
            card.classifier = Some(classes + 1);
            card.class_names.push("outlier".into());
            card.outlier_class = true;
        }
        if recipe.method == Method::Osad {
            // Not after the first stage: its full-resolution non-local mean is 1024 x 1024 per image.
            card.extractor.denoise = (1..card.extractor.widths.len()).collect();
        }
        if let Some(h) = &helper {
            anyhow::ensure!(
                h.card.classifier == Some(classes),
                "the helper model must classify the same {classes} classes"
            );
        }
        let autodiff = device.clone().autodiff();
        autodiff.seed(recipe.seed);
        let mut model = Model::new(card, &autodiff)?;
        if recipe.method == Method::Osad {
            let f = model.card.extractor.feature_dim();
            model.net.image_generator =
                Some(ImageGenerator::new(f, (f / OSAD_DECODER_WIDTH_PER_FEATURE).max(2), &autodiff));
            model.net.rotation_head = Some(LinearConfig::new(f, 4).init(&autodiff));
        }
        let average = recipe.ema.map(|_| model.net.valid());
        let optim = super::sgd(recipe.momentum, recipe.nesterov, recipe.weight_decay);
        Ok(Self {
            recipe,
            model,
            average,
            optim,
            helper,
            train,
            train_idx,
            val_idx,
            outliers,
            mined: None,
            device: device.clone(),
        })
    }

    /// ATOM's informative outlier mining: the pool sorted by the current model's outlier-class
    /// score from the most in-distribution-looking down, the hardest `atom_quantile` skipped, the
    /// next quarter of the pool kept, in an order shuffled per epoch.
    fn mine_outliers(&self, epoch: usize) -> Vec<usize> {
        let pool = self.outliers.as_ref().expect("ATOM loads its pool");
        let model = self.model.valid();
        let all: Vec<usize> = (0..pool.len()).collect();
        let mut scores = Vec::with_capacity(pool.len());
        for chunk in dataset::batches(&all, 256) {
            scores.extend(to_vec(
                model.score(crate::Detector::OutlierClass, dataset::images(pool, chunk, None, &self.device)),
            ));
        }
        let mut order = all;
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let skip = (self.recipe.atom_quantile * pool.len() as f64) as usize;
        let keep = ((ATOM_MINED_FRACTION * pool.len() as f64) as usize).clamp(1, pool.len() - skip);
        dataset::epoch_order(&order[skip..skip + keep], self.recipe.seed ^ 0xA70, epoch)
    }

    fn batch_seed(&self, epoch: usize, batch: usize) -> u64 {
        self.recipe.seed.wrapping_mul(1_000_003).wrapping_add((epoch * 100_000 + batch) as u64)
    }

    /// What validation scores and the exported file holds: the average with `--ema`, otherwise
    /// the network as trained.
    fn kept_net(&self) -> &AtdNet {
        self.average.as_ref().unwrap_or(&self.model.net)
    }

    /// Classification accuracy of `net` on `idx`, clean and (for the first `attacked` images)
    /// under PGD-10 on the cross-entropy at the recipe's eps.
    fn accuracies(&self, net: &AtdNet, idx: &[usize], attacked: usize) -> (f64, f64) {
        let model = Model { card: self.model.card.clone(), net: net.valid() };
        let (mut clean_hits, mut robust_hits) = (0.0, 0.0);
        for chunk in dataset::batches(idx, 256) {
            let x = dataset::images(&self.train, chunk, None, &self.device);
            clean_hits += accuracy(model.logits(x), &dataset::labels(&self.train, chunk)) * chunk.len() as f64;
        }
        let attacked_idx = &idx[..attacked.min(idx.len())];
        for chunk in dataset::batches(attacked_idx, 256) {
            let x = dataset::images(&self.train, chunk, None, &self.device);
            let y = dataset::labels(&self.train, chunk);
            let objective = |x: Tensor<4>| model.cross_entropy(x, &y);
            let adv =
                pgd(&objective, &x, &AttackSpec::new(self.recipe.eps, 10).with_seed(7).into(), |_, _| {}).adversarial;
            robust_hits += accuracy(model.logits(adv), &y) * chunk.len() as f64;
        }
        (clean_hits / idx.len().max(1) as f64, robust_hits / attacked_idx.len().max(1) as f64)
    }

    /// The card of the exported file: the recipe and validation metrics.
    fn card_with(&self, metrics: &Value) -> ModelCard {
        let mut card = self.model.card.clone();
        card.training = json!({
            "command": "atd train extractor",
            "recipe": self.recipe,
            "train_images": self.train_idx.len(),
            "val_images": self.val_idx.len(),
        });
        card.metrics = json!({ "validation": metrics });
        card
    }
}

/// Features `[N * F]` and labels of `idx`.
pub fn features_of(model: &Model, set: &ImageSet, idx: &[usize], device: &Device) -> (Vec<f32>, Vec<usize>) {
    let mut features = Vec::new();
    let model = model.valid();
    for chunk in dataset::batches(idx, 256) {
        features.extend(to_vec(model.features(dataset::images(set, chunk, None, device))));
    }
    (features, dataset::labels(set, idx))
}

/// Scores of every detector of `model` on `idx`.
pub fn detector_scores(
    model: &Model,
    set: &ImageSet,
    idx: &[usize],
    device: &Device,
) -> Vec<(crate::Detector, Vec<f32>)> {
    let model = model.valid();
    let mut columns: Vec<_> = model.detectors().into_iter().map(|d| (d, Vec::new())).collect();
    for chunk in dataset::batches(idx, 256) {
        let f = model.features(dataset::images(set, chunk, None, device));
        for (d, s) in &mut columns {
            s.extend(to_vec(model.score_from_features(*d, f.clone())));
        }
    }
    columns
}

/// Each detector's threshold at 95% TPR on held-out in-distribution images `idx`.
pub fn set_thresholds(model: &mut Model, set: &ImageSet, idx: &[usize], device: &Device) {
    for (d, scores) in detector_scores(model, set, idx, device) {
        model.card.thresholds.insert(d.name().to_string(), atd_core::metrics::threshold_at_tpr(&scores, 0.95));
    }
}

impl Training for ExtractorTraining {
    fn batches_per_epoch(&self) -> usize {
        self.train_idx.len().div_ceil(self.recipe.batch_size)
    }

    fn step(&mut self, epoch: usize, batch: usize, progress: f64) -> anyhow::Result<StepStats> {
        let r = &self.recipe;
        let order = dataset::epoch_order(&self.train_idx, r.seed, epoch);
        let idx = dataset::batches(&order, r.batch_size).nth(batch).expect("batch index in range");
        let mut rng = Rng::new(self.batch_seed(epoch, batch));
        let x = dataset::images(&self.train, idx, r.augment.then_some(&mut rng), &self.device);
        let y = dataset::labels(&self.train, idx);
        if r.method == Method::Atom && self.mined.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.mined = Some((epoch, self.mine_outliers(epoch)));
        }
        let r = &self.recipe;
        let x_out = self.outliers.as_ref().map(|o| {
            let n = idx.len();
            let out_idx: Vec<usize> = match &self.mined {
                Some((_, mined)) => (0..n).map(|k| mined[(batch * n + k) % mined.len()]).collect(),
                None => {
                    let start = (epoch * self.batches_per_epoch() + batch) * n;
                    (0..n).map(|k| (start + k) % o.len()).collect()
                }
            };
            dataset::images(o, &out_idx, r.augment.then_some(&mut rng), &self.device)
        });
        let attacker = self.model.valid();
        let seed = self.batch_seed(epoch, batch);
        let x_train = if r.method.attacks_in() && r.method != Method::Hat {
            let objective = |x: Tensor<4>| attacker.cross_entropy(x, &y);
            r.attack(&objective, &x, seed)
        } else {
            x.clone()
        };
        let n = idx.len();
        let (loss, logits_for_acc) = match r.method {
            Method::Standard | Method::At => {
                let logits = self.model.logits(x_train.autodiff());
                (cross_entropy(logits.clone(), &y).mean(), logits)
            }
            Method::Hat => {
                let p_clean = softmax(attacker.logits(x.clone()), 1).detach();
                let objective = |xa: Tensor<4>| kl_from(p_clean.clone(), attacker.logits(xa));
                let x_adv = r.attack(&objective, &x, seed);
                let helper = self.helper.as_ref().expect("checked in new()");
                let y_helper = argmax_rows(helper.logits(x_adv.clone()));
                let x_helper = x.clone() + (x_adv.clone() - x.clone()) * r.helper_h;
                let logits_clean = self.model.logits(x.autodiff());
                let logits_adv = self.model.logits(x_adv.autodiff());
                let logits_helper = self.model.logits(x_helper.autodiff());
                let p_clean = softmax(logits_clean.clone(), 1);
                let loss = smooth_cross_entropy(logits_clean.clone(), &y, r.label_smoothing).mean()
                    + kl_from(p_clean, logits_adv).mean() * r.beta
                    + cross_entropy(logits_helper, &y_helper).mean() * r.gamma;
                (loss, logits_clean)
            }
            Method::Oe | Method::Aoe | Method::Aloe => {
                let x_out = x_out.expect("outliers loaded for the OE family");
                let x_out = if r.method == Method::Aloe {
                    let objective = |xo: Tensor<4>| uniform_cross_entropy(attacker.logits(xo));
                    r.attack(&objective, &x_out, seed ^ 1)
                } else {
                    x_out
                };
                // One forward over both: BatchNorm statistics are shared, as in the OE code.
                let logits = self.model.logits(Tensor::cat(vec![x_train, x_out], 0).autodiff());
                let (logits_in, logits_out) = (logits.clone().narrow(0, 0, n), logits.narrow(0, n, n));
                let loss = cross_entropy(logits_in.clone(), &y).mean()
                    + uniform_cross_entropy(logits_out).mean() * r.oe_weight;
                (loss, logits_in)
            }
            Method::Osad => {
                let features = self.model.features(x_train.clone().autodiff());
                let logits = self.model.logits_from_features(features.clone());
                let decoder = self.model.net.image_generator.as_ref().expect("built for OSAD");
                let reconstruction = (decoder.forward(features) - x.clone().autodiff()).powf_scalar(2.0).mean();
                let (rotated, turns) = quarter_turns(x_train);
                let rotation = self.model.net.rotation_head.as_ref().expect("built for OSAD");
                let turn_logits = rotation.forward(self.model.features(rotated.autodiff()));
                let loss = cross_entropy(logits.clone(), &y).mean()
                    + reconstruction * r.reconstruction_weight
                    + cross_entropy(turn_logits, &turns).mean() * r.rotation_weight;
                (loss, logits)
            }
            Method::Atom => {
                // The attack pushes outliers out of the outlier class; training pulls them back.
                let outlier_label = vec![self.model.card.classifier.expect("a classifier") - 1; n];
                let x_out = x_out.expect("ATOM loads its pool");
                let objective = |xo: Tensor<4>| attacker.cross_entropy(xo, &outlier_label);
                let x_out = r.attack(&objective, &x_out, seed ^ 1);
                let logits = self.model.logits(Tensor::cat(vec![x_train, x_out], 0).autodiff());
                let (logits_in, logits_out) = (logits.clone().narrow(0, 0, n), logits.narrow(0, n, n));
                let loss = cross_entropy(logits_in.clone(), &y).mean()
                    + cross_entropy(logits_out, &outlier_label).mean() * r.oe_weight;
                (loss, logits_in)
            }
        };
        let loss_value = to_vec(loss.clone().detach())[0] as f64;
        let acc = accuracy(logits_for_acc.detach(), &y);
        let lr = r.schedule.lr(r.lr, progress);
        let grads = GradientsParams::from_grads(loss.backward(), &self.model.net);
        self.model.net = self.optim.step(lr, self.model.net.clone(), grads);
        if let Some(decay) = r.ema {
            let decay = average::warmed_up_decay(decay, epoch * self.batches_per_epoch() + batch);
            let previous = self.average.take().expect("kept with --ema");
            self.average = Some(average::update(previous, &self.model.net, decay));
        }
        Ok(StepStats { loss: loss_value, accuracy: Some(acc), images: n })
    }

    fn validate(&mut self, _epoch: usize) -> anyhow::Result<(serde_json::Map<String, Value>, f64)> {
        let attacked = self.recipe.val_attack_size;
        let (clean, robust) = self.accuracies(self.kept_net(), &self.val_idx, attacked);
        let mut m = serde_json::Map::new();
        m.insert("val_accuracy".into(), json!(clean));
        m.insert("val_pgd10_accuracy".into(), json!(robust));
        if self.average.is_some() {
            // What the average adds over the weights it averages.
            let (clean, robust) = self.accuracies(&self.model.net, &self.val_idx, attacked);
            m.insert("live_val_accuracy".into(), json!(clean));
            m.insert("live_val_pgd10_accuracy".into(), json!(robust));
        }
        m.insert("val_attacked_images".into(), json!(self.recipe.val_attack_size.min(self.val_idx.len())));
        // Adversarially trained models are selected on robust accuracy (robust overfitting),
        // the others on clean accuracy.
        let score = if self.recipe.method.attacks_in() { robust } else { clean };
        Ok((m, score))
    }

    fn net(&self) -> &AtdNet {
        &self.model.net
    }

    fn set_net(&mut self, net: AtdNet) {
        self.model.net = net;
    }

    fn average(&self) -> Option<&AtdNet> {
        self.average.as_ref()
    }

    fn set_average(&mut self, net: AtdNet) {
        self.average = Some(net);
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut ModuleOptimizer)> {
        vec![("sgd", &mut self.optim)]
    }

    fn save_weights(&self, path: &Path, metrics: &Value) -> anyhow::Result<()> {
        Model { card: self.card_with(metrics), net: self.kept_net().clone() }.save(path)
    }

    /// After training: the best model with MSP, MD, RMD and OpenMax fitted on training features
    /// and their 95%-TPR thresholds on the validation images.
    fn export(&self, best: &Path, out: &Path) -> anyhow::Result<Model> {
        let plain = Model::load(best, &self.device)?;
        let mut card = plain.card.clone();
        // ATOM's detector is its outlier class; the class-conditional baselines are for K-way heads.
        card.baselines = (!card.outlier_class)
            .then_some(BaselineSpec { mahalanobis: true, openmax: Some(OpenMaxSpec { alpha_rank: 3, tail_size: 20 }) });
        let mut model = Model::new(card, &self.device)?;
        model.net.extractor = plain.net.extractor;
        model.net.classifier = plain.net.classifier;
        if model.card.baselines.is_some() {
            let fit_idx = &self.train_idx[..self.train_idx.len().min(10_000)];
            let (features, labels) = features_of(&model, &self.train, fit_idx, &self.device);
            model.fit_baselines(&features, &labels)?;
        }
        set_thresholds(&mut model, &self.train, &self.val_idx, &self.device);
        model.save(out)?;
        Ok(model)
    }
}

/// `atd train extractor`: train, then export `<out>/extractor.safetensors`.
pub fn train(recipe: ExtractorRecipe, opts: &RunOptions, data_dir: &Path, device: &Device) -> anyhow::Result<()> {
    let recipe_json = serde_json::to_value(&recipe)?;
    let mut task = ExtractorTraining::new(recipe, data_dir, device)?;
    eprintln!(
        "training a {:?} extractor ({:?}) on {} images, validating on {}",
        task.recipe.arch,
        task.recipe.method,
        task.train_idx.len(),
        task.val_idx.len()
    );
    super::train_and_export(&mut task, opts, &recipe_json, "extractor.safetensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turns_compose_and_label_each_quarter() {
        let device = Device::flex();
        let values: Vec<f32> = (0..8 * 3 * 5 * 5).map(|v| v as f32).collect();
        let x = crate::model::tensor_from(values, [8, 3, 5, 5], &device);
        let same = |a: Tensor<4>, b: Tensor<4>| to_vec(a) == to_vec(b);
        assert!(!same(turn(x.clone(), 1), x.clone()), "a turn moves pixels");
        for k in 0..4 {
            assert!(same(turn(turn(x.clone(), k), 1), turn(x.clone(), k + 1)), "turn {k} then one more");
        }
        let (turned, turns) = quarter_turns(x.clone());
        assert_eq!(turns, [0, 0, 1, 1, 2, 2, 3, 3]);
        assert!(same(turned.narrow(0, 4, 2), turn(x.narrow(0, 4, 2), 2)));
    }
}
