//! `atd train atd`: the ATD discriminator (and generator) on a frozen extractor's features.
//! Each step attacks the real in-distribution images (pushing D down) and the real outliers
//! (pushing D up) end to end with PGD through the frozen extractor and the current D in eval
//! mode; generated features are never attacked. Then D takes one Adam step on
//! BCE(in, 1) + alpha BCE(out, 0) + (1 - alpha) BCE(G(z), 0) over one concatenated batch (its
//! BatchNorm sees the joint statistics, as in the reference), and, with `--generator trained`,
//! G one step on BCE(D(G(z)), 1) with D in eval mode.
//!
//! With `--pixel` (the OpenGAN-pixel baseline) there is no extractor file: the discriminator is a
//! fresh extractor preset with D's layers on its features, trained end to end on pixels against
//! an image generator (`ImageGenerator`) in place of the feature generator.
//!
//! One file past the usual length: the recipe, the step and the validation it selects on share
//! the attack settings and the outlier mix; apart, each would need the others' internals.

use std::path::{Path, PathBuf};

use anyhow::Context;
use atd_core::attack::{AttackSpec, Direction};
use atd_core::card::{DiscriminatorSpec, GeneratorSpec, ModelCard};
use atd_core::data::ImageSet;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extractor::{Arch, set_thresholds};
use super::{ExtraOutliers, RunOptions, StepStats, Training, is_zero, parse_decay, parse_fraction};
use crate::dataset;
use crate::model::{AtdNet, ImageGenerator, Model, tensor_from, to_vec};
use crate::pgd::{PgdConfig, pgd};
use crate::rng::Rng;
use crate::{Detector, synthetic};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorMode {
    /// As the reference code runs: G's output is detached, so G keeps its random
    /// initialisation (only its BatchNorm statistics move).
    Frozen,
    /// G is trained against D, as OpenGAN intends.
    Trained,
}

#[derive(Clone, Debug, clap::Args, Serialize, Deserialize)]
pub struct AtdRecipe {
    /// Weights file of the (robust) extractor; its classifier head and baselines are kept.
    #[arg(long, required_unless_present = "pixel", conflicts_with = "pixel")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extractor: Option<PathBuf>,
    /// OpenGAN-pixel: no extractor file; this preset, trained from scratch with D on pixels, is
    /// the discriminator's backbone, and the generator makes 32x32 images (`--generator trained`
    /// trains it against D, as OpenGAN does).
    #[arg(long, value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel: Option<Arch>,
    #[arg(long, value_enum, default_value = "frozen")]
    pub generator: GeneratorMode,
    /// Train without attacking (the OpenGAN-fea baseline).
    #[arg(long)]
    pub no_attack: bool,
    /// Ablation (paper Table 3): also attack what the generator makes, with L-infinity PGD of
    /// this radius in its output space (features for ATD; images with `--pixel`, clamped to
    /// [0, 1]), pushing D towards "in" like the real outliers. Off by default, as in ATD.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_generated: Option<f32>,
    /// Start D and G from this ATD weights file instead of a random initialisation (it must be
    /// built on the same --extractor): continue a trained detector with another recipe, e.g.
    /// stronger training attacks. The optimizers start afresh.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Hidden widths of the discriminator, comma-separated. Default: the reference's layout scaled
    /// to the feature size, [F, F/2, F/4, F/8] (on its 512-d features: 512,256,128,64).
    #[arg(long, value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discriminator_widths: Option<Vec<usize>>,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate of G; D uses lr / 1.5 (as the reference).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Weight of the real outliers against the generated features in the "fake" loss.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    #[arg(long, default_value = "8/255", value_parser = parse_fraction)]
    pub eps: f32,
    #[arg(long, default_value_t = 10)]
    pub attack_steps: usize,
    #[arg(long, default_value = "cifar10-train.zip")]
    pub train_set: String,
    /// Real outliers; the last --val-ood-size of them are held out for model selection.
    #[arg(long, default_value = "food101-32.bin")]
    pub outliers: String,
    #[command(flatten)]
    #[serde(flatten)]
    pub extra_outliers: ExtraOutliers,
    /// Procedural validation outliers from families never trained on (star fields, cell blobs,
    /// fractal textures, pen curves), split evenly between them.
    #[arg(long, default_value_t = 0)]
    #[serde(default, skip_serializing_if = "is_zero")]
    pub val_synthetic: usize,
    /// Validation outliers made from validation-split images in a way never trained on
    /// (enlarged crops of 8-16 pixels): a near-OOD validation set.
    #[arg(long, default_value_t = 0)]
    #[serde(default, skip_serializing_if = "is_zero")]
    pub val_derived: usize,
    /// What picks the best epoch, averaged over the held-out outliers and each validation set
    /// above: the clean AUROC, or the mean of the clean and the PGD In-and-Out AUROC.
    #[arg(long, value_enum, default_value = "clean-and-attacked")]
    #[serde(default, skip_serializing_if = "Selection::is_clean")]
    pub select_on: Selection,
    #[arg(long, default_value_t = 1000)]
    pub val_size: usize,
    #[arg(long, default_value_t = 500)]
    pub val_ood_size: usize,
    /// Validation images (in and out each) also scored under PGD In-and-Out each epoch.
    #[arg(long, default_value_t = 200)]
    pub val_attack_size: usize,
    /// PGD steps of that validation attack (logged as val_pgd<steps>_in_out_auroc).
    #[arg(long, default_value_t = DEFAULT_VAL_ATTACK_STEPS)]
    #[serde(default = "default_val_attack_steps", skip_serializing_if = "is_default_val_attack_steps")]
    pub val_attack_steps: usize,
    /// Keep an exponential moving average of the discriminator's weights with this decay
    /// (e.g. 0.99), warmed up over the first steps; validation, model selection and the exported
    /// file use the average instead of the last iterate.
    #[arg(long, value_parser = parse_decay)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The reference's rule (recipes from before this choice existed).
    #[default]
    Clean,
    /// Robust detection is the point: an epoch that separates well only unattacked loses.
    CleanAndAttacked,
}

impl Selection {
    fn is_clean(&self) -> bool {
        *self == Selection::Clean
    }
}

/// OpenGAN-pixel's generator: DCGAN's noise size and width (64: 256 channels at 4x4).
const PIXEL_NOISE_DIM: usize = 100;
const PIXEL_GENERATOR_WIDTH: usize = 64;

/// Recipes from before a field existed serialise as they did then (resume compares recipes):
/// the default validation attack is left out of the JSON.
const DEFAULT_VAL_ATTACK_STEPS: usize = 10;

fn default_val_attack_steps() -> usize {
    DEFAULT_VAL_ATTACK_STEPS
}

fn is_default_val_attack_steps(n: &usize) -> bool {
    *n == DEFAULT_VAL_ATTACK_STEPS
}

/// The extractor's tensors of a weights file, by name.
fn extractor_tensors(weights: atd_core::Weights) -> Vec<(String, atd_core::weights::NamedTensor)> {
    weights.tensors.into_iter().filter(|(name, _)| name.starts_with("extractor.")).collect()
}

fn read_weights(path: &Path) -> anyhow::Result<(Vec<u8>, atd_core::Weights)> {
    let bytes = atd_core::weights::read_weights_file(path).with_context(|| format!("reading {}", path.display()))?;
    let weights = atd_core::Weights::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    Ok((bytes, weights))
}

/// D and G of the `--init` file, refused unless it was trained on the same extractor (its
/// discriminator only means something on those features).
fn initial_detector(init: &Path, extractor: &Path, device: &Device) -> anyhow::Result<Model> {
    let (bytes, weights) = read_weights(init)?;
    let model = Model::from_bytes(&bytes, device).with_context(|| format!("loading {}", init.display()))?;
    anyhow::ensure!(
        model.net.discriminator.is_some() && model.net.generator.is_some(),
        "--init {}: the file has no discriminator and generator (an extractor file?)",
        init.display()
    );
    anyhow::ensure!(
        extractor_tensors(weights) == extractor_tensors(read_weights(extractor)?.1),
        "--init {} was trained on another extractor than --extractor {}",
        init.display(),
        extractor.display()
    );
    Ok(model)
}

pub struct AtdTraining {
    recipe: AtdRecipe,
    model: Model,
    optim_d: ModuleOptimizer,
    optim_g: ModuleOptimizer,
    train: ImageSet,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    outliers: ImageSet,
    outlier_idx: Vec<usize>,
    val_ood_idx: Vec<usize>,
    /// Validation OOD sets besides the held-out outliers: each procedural family, and the
    /// derived near-OOD set.
    val_sets: Vec<(String, ImageSet)>,
    /// The moving average of the network (only its discriminator is averaged), with `--ema`.
    average: Option<AtdNet>,
    device: Device,
}

fn bce_with_logits(z: Tensor<1>, target_in: bool) -> Tensor<1> {
    if target_in { softplus(z.neg(), 1.0) } else { softplus(z, 1.0) }
}

/// D's loss on its logits of [in; generated; outliers] (`n` each): BCE(in, 1) + (1 - alpha)
/// BCE(generated, 0) + alpha BCE(outliers, 0); and how many of the real images (in and
/// outliers) fall on the right side of its decision boundary.
fn discriminator_loss(z: Tensor<1>, n: usize, alpha: f32) -> (Tensor<1>, usize) {
    let (z_in, z_fake, z_out) = (z.clone().narrow(0, 0, n), z.clone().narrow(0, n, n), z.narrow(0, 2 * n, n));
    let loss = bce_with_logits(z_in.clone(), true).mean()
        + bce_with_logits(z_fake, false).mean() * (1.0 - alpha)
        + bce_with_logits(z_out.clone(), false).mean() * alpha;
    let hits = to_vec(z_in.detach()).iter().filter(|&&v| v > 0.0).count()
        + to_vec(z_out.detach()).iter().filter(|&&v| v <= 0.0).count();
    (loss, hits)
}

impl AtdTraining {
    pub fn new(recipe: AtdRecipe, data_dir: &Path, device: &Device) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !(recipe.no_attack && recipe.attack_generated.is_some()),
            "--attack-generated is an ablation of the attacked training: drop --no-attack"
        );
        anyhow::ensure!(
            recipe.pixel.is_none() || (recipe.init.is_none() && recipe.ema.is_none()),
            "--pixel trains its discriminator from scratch, without --init or --ema"
        );
        let autodiff = device.clone().autodiff();
        let extractor = match (&recipe.extractor, recipe.pixel) {
            // On the training device, but never stepped: only D's and G's gradients are applied.
            (Some(path), None) => Model::load(path, &autodiff)?,
            // Trained with D: a fresh preset without a classifier head.
            (None, Some(arch)) => {
                let card = ModelCard { classifier: None, class_names: vec![], ..ModelCard::classifier(arch.spec()) };
                Model::new(card, &autodiff)?
            }
            _ => anyhow::bail!("give either --extractor or --pixel"),
        };
        let train = dataset::load_set(data_dir, &recipe.train_set)?;
        let (mut train_idx, val_idx) = dataset::split(train.len(), recipe.val_size, recipe.seed)?;
        if let Some(n) = recipe.train_limit {
            train_idx.truncate(n);
        }
        let mut outliers = dataset::load_set(data_dir, &recipe.outliers)?;
        anyhow::ensure!(
            recipe.val_ood_size < outliers.len(),
            "--val-ood-size {} leaves no training outliers out of {}",
            recipe.val_ood_size,
            outliers.len()
        );
        let split_at = outliers.len() - recipe.val_ood_size;
        let (mut outlier_idx, val_ood_idx): (Vec<usize>, Vec<usize>) =
            ((0..split_at).collect(), (split_at..outliers.len()).collect());
        outlier_idx.extend(synthetic::add_training_outliers(
            &mut outliers,
            split_at,
            &recipe.extra_outliers,
            (&train, &train_idx),
            recipe.seed,
        )?);
        // Other seed streams than the training images, and other families and kinds.
        let mut val_sets = Vec::new();
        if recipe.val_synthetic > 0 {
            let set = synthetic::procedural(&synthetic::VAL_FAMILIES, recipe.val_synthetic, recipe.seed ^ 0x7A1D);
            for (family, name) in synthetic::VAL_FAMILIES.iter().enumerate() {
                val_sets.push((name.to_string(), set.subset(|label| label as usize == family)));
            }
        }
        if recipe.val_derived > 0 {
            val_sets.push((
                "zoom".into(),
                synthetic::derived(&["zoom"], &train, &val_idx, recipe.val_derived, recipe.seed ^ 0x200D)?,
            ));
        }

        let init = match (&recipe.init, &recipe.extractor) {
            (Some(init), Some(extractor)) => Some(initial_detector(init, extractor, &autodiff)?),
            _ => None,
        };
        let mut card = extractor.card.clone();
        let f = card.extractor.feature_dim();
        let scaled = DiscriminatorSpec::for_features(f);
        card.discriminator = Some(match &recipe.discriminator_widths {
            Some(widths) => DiscriminatorSpec { widths: widths.clone(), ..scaled },
            None => scaled,
        });
        // OpenGAN-pixel's generator makes images; it is not part of the card (or the file).
        card.generator = recipe.pixel.is_none().then(|| GeneratorSpec::for_features(f));
        if let Some(init) = &init {
            anyhow::ensure!(
                recipe.discriminator_widths.is_none(),
                "--discriminator-widths cannot be combined with --init: the discriminator comes from {}",
                recipe.init.as_ref().map_or(String::new(), |p| p.display().to_string())
            );
            card.discriminator.clone_from(&init.card.discriminator);
            card.generator.clone_from(&init.card.generator);
        }
        card.thresholds.clear();
        autodiff.seed(recipe.seed);
        let mut model = Model::new(card, &autodiff)?;
        if let Some(init) = init {
            model.net.discriminator = init.net.discriminator;
            model.net.generator = init.net.generator;
        }
        if recipe.pixel.is_some() {
            // Seeded like D: the backbone built with `model`, and the image generator.
            model.net.image_generator = Some(ImageGenerator::new(PIXEL_NOISE_DIM, PIXEL_GENERATOR_WIDTH, &autodiff));
        } else {
            model.net.extractor = extractor.net.extractor;
            model.net.classifier = extractor.net.classifier;
            model.net.baselines = extractor.net.baselines;
        }
        let adam = || AdamConfig::new().with_beta_1(0.5).with_beta_2(0.999).init();
        let average = recipe.ema.map(|_| model.net.valid());
        Ok(Self {
            recipe,
            model,
            optim_d: adam(),
            optim_g: adam(),
            train,
            train_idx,
            val_idx,
            outliers,
            outlier_idx,
            val_ood_idx,
            val_sets,
            average,
            device: device.clone(),
        })
    }

    fn batch_seed(&self, epoch: usize, batch: usize) -> u64 {
        self.recipe.seed.wrapping_mul(2_000_003).wrapping_add((epoch * 100_000 + batch) as u64)
    }

    fn noise(&self, n: usize, seed: u64) -> Tensor<2> {
        let dim = self.model.card.generator.as_ref().map_or(PIXEL_NOISE_DIM, |g| g.noise_dim);
        let mut rng = Rng::new(seed);
        tensor_from((0..n * dim).map(|_| rng.normal()).collect(), [n, dim], &self.device.clone().autodiff())
    }

    /// PGD on the ATD score of `x`, pushed `direction` (the training attack: in-distribution
    /// images out, outliers in).
    pub fn attack(model: &Model, x: &Tensor<4>, direction: Direction, cfg: &PgdConfig) -> Tensor<4> {
        let objective = |x: Tensor<4>| model.score_logit(Detector::Atd, x) * direction.sign();
        pgd(&objective, x, cfg, |_, _| {}).adversarial
    }

    /// The ablation's feature-space PGD on generated features, pushing D up (towards "in").
    fn attack_features(&self, model: &Model, features: Tensor<2>, radius: f32, seed: u64) -> Tensor<2> {
        let [n, f] = features.dims();
        let discriminator = model.net.discriminator.as_ref().expect("built with a discriminator");
        let objective = |x: Tensor<4>| discriminator.forward(x.reshape([n, f]));
        let cfg = PgdConfig {
            bounds: (f32::NEG_INFINITY, f32::INFINITY),
            ..AttackSpec::new(radius, self.recipe.attack_steps).with_seed(seed as u32).into()
        };
        let x = tensor_from(to_vec(features), [n, f, 1, 1], &self.device);
        pgd(&objective, &x, &cfg, |_, _| {}).adversarial.reshape([n, f])
    }

    fn scores(
        &self,
        model: &Model,
        set: &ImageSet,
        idx: &[usize],
        attack: Option<(Direction, &PgdConfig)>,
    ) -> Vec<f32> {
        let mut scores = Vec::with_capacity(idx.len());
        for chunk in dataset::batches(idx, 256) {
            let mut x = dataset::images(set, chunk, None, &self.device);
            if let Some((direction, cfg)) = attack {
                x = Self::attack(model, &x, direction, cfg);
            }
            scores.extend(to_vec(model.score(Detector::Atd, x)));
        }
        scores
    }

    /// OpenGAN-pixel's step: D (backbone and layers) one Adam step on the loss of ATD's D over
    /// [in, G(z), outliers] as pixels; then, with a trained generator, G one step on
    /// BCE(D(G(z)), 1) through a frozen copy of D.
    fn pixel_step(
        &mut self,
        r: &AtdRecipe,
        attacker: &Model,
        x_in: Tensor<4>,
        x_out: Tensor<4>,
        seed: u64,
    ) -> StepStats {
        let n = x_in.dims()[0];
        let generator = self.model.net.image_generator.take().expect("built with --pixel");
        let generator = match r.generator {
            GeneratorMode::Frozen => generator.no_grad(),
            GeneratorMode::Trained => generator,
        };
        let mut fake = generator.forward(self.noise(n, seed ^ 0x6E6F)).detach();
        if let Some(radius) = r.attack_generated {
            let cfg = PgdConfig::from(AttackSpec::new(radius, r.attack_steps).with_seed((seed ^ 0x4645) as u32));
            let dims = fake.dims();
            let images = tensor_from(to_vec(fake), dims, &self.device);
            fake = Self::attack(attacker, &images, Direction::In, &cfg).autodiff();
        }
        let z = self.model.score_logit(Detector::Atd, Tensor::cat(vec![x_in.autodiff(), fake, x_out.autodiff()], 0));
        let (loss_d, hits) = discriminator_loss(z, n, r.alpha);
        let loss_value = to_vec(loss_d.clone().detach())[0] as f64;
        // The generator was taken out of the network: D's optimizer never sees its parameters.
        let grads = GradientsParams::from_grads(loss_d.backward(), &self.model.net);
        self.model.net = self.optim_d.step(r.lr / 1.5, self.model.net.clone(), grads);
        let generator = match r.generator {
            GeneratorMode::Frozen => generator,
            GeneratorMode::Trained => {
                let judge = Model { card: self.model.card.clone(), net: self.model.net.clone().freeze() };
                let z = judge.score_logit(Detector::Atd, generator.forward(self.noise(n, seed ^ 0x47)));
                let grads = GradientsParams::from_grads(bce_with_logits(z, true).mean().backward(), &generator);
                self.optim_g.step(r.lr, generator, grads)
            }
        };
        self.model.net.image_generator = Some(generator);
        StepStats { loss: loss_value, accuracy: Some(hits as f64 / (2 * n) as f64), images: n }
    }

    /// What validation scores and the exported file holds: the average with `--ema`, otherwise
    /// the network as trained.
    fn kept_net(&self) -> &AtdNet {
        self.average.as_ref().unwrap_or(&self.model.net)
    }

    fn card_with(&self, metrics: &Value) -> atd_core::card::ModelCard {
        let mut card = self.model.card.clone();
        card.training = json!({
            "command": "atd train atd",
            "recipe": self.recipe,
            "extractor_training": self.model.card.training,
            "train_images": self.train_idx.len(),
            "val_images": self.val_idx.len(),
            "val_ood": format!("the last {} records of {} (held out of outlier training; not a test set)", self.val_ood_idx.len(), self.recipe.outliers),
            "val_sets": self.val_sets.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        });
        card.metrics = json!({ "validation": metrics, "extractor": self.model.card.metrics });
        card
    }
}

impl Training for AtdTraining {
    fn batches_per_epoch(&self) -> usize {
        self.train_idx.len().div_ceil(self.recipe.batch_size)
    }

    fn step(&mut self, epoch: usize, batch: usize, _progress: f64) -> anyhow::Result<StepStats> {
        let r = self.recipe.clone();
        let order = dataset::epoch_order(&self.train_idx, r.seed, epoch);
        let idx = dataset::batches(&order, r.batch_size).nth(batch).expect("batch index in range");
        let n = idx.len();
        let out_order = dataset::epoch_order(&self.outlier_idx, !r.seed, epoch);
        let start = batch * n;
        let out_idx: Vec<usize> = (0..n).map(|k| out_order[(start + k) % out_order.len()]).collect();
        let x_in = dataset::images(&self.train, idx, None, &self.device);
        let x_out = dataset::images(&self.outliers, &out_idx, None, &self.device);

        let attacker = self.model.valid();
        let (x_in, x_out) = if r.no_attack {
            (x_in, x_out)
        } else {
            let cfg =
                PgdConfig::from(AttackSpec::new(r.eps, r.attack_steps).with_seed(self.batch_seed(epoch, batch) as u32));
            let cfg_out = PgdConfig::from(cfg.attack.clone().with_seed(cfg.attack.seed ^ 0xA5A5));
            // The two attacks are independent: run side by side, one's serial stretches (Burn's
            // CPU backend runs elementwise ops on the calling thread) overlap the other's
            // parallel convolutions, instead of leaving a core idle.
            std::thread::scope(|scope| {
                let outliers = scope.spawn(|| Self::attack(&attacker, &x_out, Direction::In, &cfg_out));
                let inliers = Self::attack(&attacker, &x_in, Direction::Out, &cfg);
                (inliers, outliers.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            })
        };
        if r.pixel.is_some() {
            return Ok(self.pixel_step(&r, &attacker, x_in, x_out, self.batch_seed(epoch, batch)));
        }
        let feats = attacker.features(Tensor::cat(vec![x_in, x_out], 0));
        let (f_in, f_out) = (feats.clone().narrow(0, 0, n), feats.narrow(0, n, n));

        // D step on [real, fake, outliers] in one forward.
        let generator = self.model.net.generator.take().expect("built with a generator");
        // A frozen G runs untracked (same values; BatchNorm statistics still move): its autodiff
        // graph, never consumed by a backward pass, stayed alive in Burn and made every epoch of
        // a long run slower than the last (measured: 493 s for epoch 1, 2642 s for epoch 9).
        let generator = match r.generator {
            GeneratorMode::Frozen => generator.no_grad(),
            GeneratorMode::Trained => generator,
        };
        let mut fake = generator.forward(self.noise(n, self.batch_seed(epoch, batch) ^ 0x6E6F)).detach();
        if let Some(radius) = r.attack_generated {
            fake = self.attack_features(&attacker, fake, radius, self.batch_seed(epoch, batch) ^ 0x4645).autodiff();
        }
        let discriminator = self.model.net.discriminator.take().expect("built with a discriminator");
        let z = discriminator.forward(Tensor::cat(vec![f_in.autodiff(), fake, f_out.autodiff()], 0));
        let (loss_d, hits) = discriminator_loss(z, n, r.alpha);
        let loss_value = to_vec(loss_d.clone().detach())[0] as f64;
        let grads = GradientsParams::from_grads(loss_d.backward(), &discriminator);
        let discriminator = self.optim_d.step(r.lr / 1.5, discriminator, grads);
        if let Some(decay) = r.ema {
            let decay = crate::average::warmed_up_decay(decay, epoch * self.batches_per_epoch() + batch);
            let average = self.average.as_mut().expect("kept with --ema");
            let previous = average.discriminator.take().expect("built with a discriminator");
            average.discriminator = Some(crate::average::update(previous, &discriminator, decay));
        }

        let generator = match r.generator {
            GeneratorMode::Frozen => generator,
            GeneratorMode::Trained => {
                let judge = discriminator.clone().freeze();
                let z = judge.forward(generator.forward(self.noise(n, self.batch_seed(epoch, batch) ^ 0x47)));
                let grads = GradientsParams::from_grads(bce_with_logits(z, true).mean().backward(), &generator);
                self.optim_g.step(r.lr, generator, grads)
            }
        };
        if let Some(average) = self.average.as_mut() {
            // Only D is averaged; G (whose BatchNorm statistics move even when frozen) is kept
            // as trained, so the file stays the pair that trained together.
            average.generator = Some(generator.valid());
        }
        self.model.net.discriminator = Some(discriminator);
        self.model.net.generator = Some(generator);
        // "Accuracy": real in and real outliers on the right side of D's decision boundary.
        Ok(StepStats { loss: loss_value, accuracy: Some(hits as f64 / (2 * n) as f64), images: n })
    }

    fn validate(&mut self, _epoch: usize) -> anyhow::Result<(serde_json::Map<String, Value>, f64)> {
        let model = Model { card: self.model.card.clone(), net: self.kept_net().valid() };
        let k = self.recipe.val_attack_size;
        let steps = self.recipe.val_attack_steps;
        let cfg = PgdConfig::from(AttackSpec::new(self.recipe.eps, steps).with_seed(11));
        let in_clean = self.scores(&model, &self.train, &self.val_idx, None);
        let in_attacked =
            self.scores(&model, &self.train, &self.val_idx[..k.min(self.val_idx.len())], Some((Direction::Out, &cfg)));
        // Clean and In-and-Out AUROC against images `idx` of `set`.
        let against = |set: &ImageSet, idx: &[usize]| {
            let clean = atd_core::metrics::OodMetrics::compute(&in_clean, &self.scores(&model, set, idx, None));
            let attacked = self.scores(&model, set, &idx[..k.min(idx.len())], Some((Direction::In, &cfg)));
            (clean, atd_core::metrics::auroc(&in_attacked, &attacked))
        };
        let (clean, robust_auroc) = against(&self.outliers, &self.val_ood_idx);
        let mut m = serde_json::Map::new();
        m.insert("val_auroc".into(), json!(clean.auroc));
        m.insert("val_fpr95".into(), json!(clean.fpr_at_95_tpr));
        m.insert(format!("val_pgd{steps}_in_out_auroc"), json!(robust_auroc));
        m.insert("val_attacked_images".into(), json!(k));
        let mut per_set = vec![(clean.auroc, robust_auroc)];
        for (name, set) in &self.val_sets {
            let (clean, robust) = against(set, &(0..set.len()).collect::<Vec<_>>());
            m.insert(format!("val_auroc_{name}"), json!(clean.auroc));
            m.insert(format!("val_pgd{steps}_in_out_auroc_{name}"), json!(robust));
            per_set.push((clean.auroc, robust));
        }
        // The reference selects on clean validation AUROC (alpha <= 0.5); here on the mean over
        // every validation OOD set, of the clean AUROC or of it and the attacked one.
        let per_set_score = |(clean, robust): (f64, f64)| match self.recipe.select_on {
            Selection::Clean => clean,
            Selection::CleanAndAttacked => (clean + robust) / 2.0,
        };
        let score = per_set.iter().map(|&s| per_set_score(s)).sum::<f64>() / per_set.len() as f64;
        m.insert("val_selection_auroc".into(), json!(score));
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
        vec![("d", &mut self.optim_d), ("g", &mut self.optim_g)]
    }

    fn save_weights(&self, path: &Path, metrics: &Value) -> anyhow::Result<()> {
        Model { card: self.card_with(metrics), net: self.kept_net().clone() }.save(path)
    }

    /// The best model, with every detector's 95%-TPR threshold on the validation images.
    fn export(&self, best: &Path, out: &Path) -> anyhow::Result<Model> {
        let mut model = Model::load(best, &self.device)?;
        set_thresholds(&mut model, &self.train, &self.val_idx, &self.device);
        model.save(out)?;
        Ok(model)
    }
}

/// `atd train atd`: train, then export `<out>/atd.safetensors`.
pub fn train(recipe: AtdRecipe, opts: &RunOptions, data_dir: &Path, device: &Device) -> anyhow::Result<()> {
    let recipe_json = serde_json::to_value(&recipe)?;
    let mut task = AtdTraining::new(recipe, data_dir, device)?;
    let r = &task.recipe;
    let model = match r.pixel {
        // Unattacked it is the OpenGAN-pixel baseline; attacked, Table 3's pixel variant of ATD.
        Some(arch) => format!("{}a {arch:?} discriminator on pixels", if r.no_attack { "OpenGAN-pixel: " } else { "" }),
        None => "ATD".to_string(),
    };
    let attack = match (r.no_attack, r.attack_generated) {
        (true, _) if r.pixel.is_some() => "no attack".to_string(),
        (true, _) => "no attack: OpenGAN-fea".to_string(),
        (false, None) => format!("PGD-{} at eps {:.5}", r.attack_steps, r.eps),
        (false, Some(radius)) => format!(
            "PGD-{} at eps {:.5}, ablation: generated {} attacked too (radius {radius})",
            r.attack_steps,
            r.eps,
            if r.pixel.is_some() { "images" } else { "features" }
        ),
    };
    let start = r.init.as_ref().map(|p| format!(", starting from {}", p.display())).unwrap_or_default();
    eprintln!(
        "training {model} ({:?} generator, {attack}{start}) on {} in-distribution images and {} outliers",
        r.generator,
        task.train_idx.len(),
        task.outlier_idx.len()
    );
    super::train_and_export(&mut task, opts, &recipe_json, "atd.safetensors")
}
