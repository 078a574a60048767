//! Shared helpers for the atd-train integration tests.
#![allow(dead_code)]

use atd_core::card::{BaselineSpec, DiscriminatorSpec, ExtractorSpec, GeneratorSpec, ModelCard, OpenMaxSpec};
use atd_train::model::{tensor_from, to_vec};
use atd_train::rng::Rng;
use atd_train::{Detector, Model};
use burn::module::Param;
use burn::tensor::{Device, Tensor};

pub fn device() -> Device {
    Device::flex()
}

/// A small card with every part: classifier, discriminator, generator and both baselines.
pub fn full_card(extractor: ExtractorSpec, classes: usize) -> ModelCard {
    let f = extractor.feature_dim();
    let mut card = ModelCard::classifier(extractor);
    card.classifier = Some(classes);
    card.class_names = (0..classes).map(|c| format!("class{c}")).collect();
    card.discriminator = Some(DiscriminatorSpec { widths: vec![32, 32, 16, 16], ..DiscriminatorSpec::for_features(f) });
    card.generator = Some(GeneratorSpec { noise_dim: 6, widths: vec![8, 4] });
    card.baselines =
        Some(BaselineSpec { mahalanobis: true, openmax: Some(OpenMaxSpec { alpha_rank: 2, tail_size: 8 }) });
    card
}

/// Random images in [0,1], including exact 0 and 1 pixels (to exercise the box clamp).
pub fn random_images(n: usize, seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = Rng::new(seed);
    let values: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|i| match i % 17 {
            0 => 0.0,
            1 => 1.0,
            _ => rng.uniform(),
        })
        .collect();
    tensor_from(values, [n, 3, 32, 32], device)
}

/// A model of `card` with random weights, BN statistics perturbed away from identity, and
/// baselines fitted on the model's own predictions for random images.
pub fn random_model(card: ModelCard, seed: u64) -> Model {
    let device = device();
    let mut model = seeded_model(card, seed, &device);
    model.randomise_batch_norm_statistics(seed);
    amplify_discriminator(&mut model);
    if model.net.baselines.is_some() {
        let x = random_images(64, seed + 1, &device);
        let classes = model.card.classifier.unwrap();
        let features = model.valid().features(x);
        standardise_classifier(&mut model, features.clone());
        let logits = to_vec(model.valid().logits_from_features(features.clone()));
        let labels: Vec<usize> = logits.chunks_exact(classes).map(argmax).collect();
        model.fit_baselines(&to_vec(features), &labels).unwrap();
    }
    model
}

/// The DCGAN init (N(0, 0.02)) makes an untrained discriminator almost constant; rescale its
/// weights to unit-gain (std 1/sqrt(fan_in)) so its score responds to the input.
fn amplify_discriminator(model: &mut Model) {
    let Some(d) = model.net.discriminator.as_mut() else { return };
    let layers = d.hidden.iter_mut().map(|l| &mut l.linear).chain(std::iter::once(&mut d.output));
    for linear in layers {
        let fan_in = linear.weight.val().dims()[0] as f32;
        linear.weight = Param::from_tensor(linear.weight.val() * (1.0 / (0.02 * fan_in.sqrt())));
    }
}

/// Rescale the classifier head so each class logit has zero mean and unit variance over
/// `features`: a random head then predicts every class about equally often.
fn standardise_classifier(model: &mut Model, features: Tensor<2>) {
    let logits = model.valid().logits_from_features(features);
    let mean = logits.clone().mean_dim(0);
    let std = (logits - mean.clone()).powf_scalar(2.0).mean_dim(0).sqrt() + 1e-6;
    let c = mean.dims()[1];
    let head = model.net.classifier.as_mut().unwrap();
    let weight = head.weight.val() / std.clone();
    let bias = (head.bias.as_ref().unwrap().val().reshape([1, c]) - mean) / std;
    head.weight = Param::from_tensor(weight);
    head.bias = Some(Param::from_tensor(bias.reshape([c])));
}

pub fn argmax(r: &[f32]) -> usize {
    r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
}

pub fn scores(model: &Model, d: Detector, x: &Tensor<4>) -> Vec<f32> {
    to_vec(model.score(d, x.clone()))
}

/// Burn's random generator is global: tests running in parallel threads would interleave their
/// draws, so seeding and initialising happen under one lock.
pub fn seeded_model(card: ModelCard, seed: u64, device: &Device) -> Model {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    Model::new(card, device).unwrap()
}

/// A fresh, empty path `name` in this build's scratch folder (target/tmp): what a test writes is
/// replaced by the next run instead of piling up in /tmp.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}

/// A folder holding `cifar10-tiny.bin` and `ood-tiny.bin`: the data pack's fixtures when the pack
/// is on this machine (`ATD_DATA`, else `../shared/data`), otherwise synthetic stand-ins in the
/// same format (class-coloured images; noise as OOD) written to a temporary folder.
pub fn fixture_dir() -> std::path::PathBuf {
    let pack = std::env::var_os("ATD_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if pack.join("cifar10-tiny.bin").exists() && pack.join("ood-tiny.bin").exists() {
        return pack;
    }
    // Written once per test process: tests run in parallel and share the folder.
    static SYNTHETIC: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    eprintln!("data pack not found at {}: using synthetic fixtures", pack.display());
    SYNTHETIC.get_or_init(synthetic_fixtures).clone()
}

fn synthetic_fixtures() -> std::path::PathBuf {
    let dir = scratch("atd-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(3);
    let mut tiny = Vec::new();
    let mut ood = Vec::new();
    for i in 0..200 {
        let label = (i % 10) as u8;
        tiny.push(label);
        for c in 0..3 {
            let base = ((label as usize * 37 + c * 91) % 256) as f32;
            tiny.extend((0..1024).map(|_| (base + 40.0 * (rng.uniform() - 0.5)).clamp(0.0, 255.0) as u8));
        }
        ood.push((i % 2) as u8);
        ood.extend((0..3072).map(|_| (rng.uniform() * 255.0) as u8));
    }
    std::fs::write(dir.join("cifar10-tiny.bin"), tiny).unwrap();
    std::fs::write(dir.join("ood-tiny.bin"), ood).unwrap();
    dir
}

/// A model whose extractor has OSAD's denoising block after its second stage, with random 1x1
/// output weights (the block starts as the identity: its output convolution is zero at
/// initialisation), so the non-local mean and both attentions are in every score.
pub fn denoising_model(extractor: ExtractorSpec, seed: u64) -> Model {
    let mut model = random_model(full_card(ExtractorSpec { denoise: vec![1], ..extractor }, 3), seed);
    let output = &mut model.net.extractor.denoise[0].output;
    let dims = output.weight.val().dims();
    output.weight = Param::from_tensor(Tensor::random(dims, burn::tensor::Distribution::Normal(0.0, 0.3), &device()));
    model
}
