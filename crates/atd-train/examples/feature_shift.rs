//! How far ATD's training attack moves the extractor's features, to size the feature-space
//! attack of the `--attack-generated` ablation (the generator makes features, not images, so
//! its attack needs a radius in feature units):
//! `cargo run --release -p atd-train --example feature_shift -- <atd weights> [steps] [images]`
//! Runs the training attack (PGD on the ATD logit at 8/255, default 5 steps) on the first
//! images of the CIFAR-10 training set (pushed down) and of the Food-101 outliers (pushed up),
//! and prints the L-infinity and L2 feature displacement beside the scale of real and generated
//! features (the generator in training mode, as in the D step).

use std::path::Path;

use atd_core::attack::Direction;
use atd_train::model::{tensor_from, to_vec};
use atd_train::rng::Rng;
use atd_train::train::atd::AtdTraining;
use atd_train::{Model, PgdConfig, dataset};
use burn::tensor::Device;

fn median_and_p90(mut v: Vec<f32>) -> (f32, f32) {
    v.sort_by(f32::total_cmp);
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

/// Per-sample L-infinity norms of the rows of a `[n, f]` matrix.
fn row_linf(values: &[f32], f: usize) -> Vec<f32> {
    values.chunks(f).map(|row| row.iter().fold(0.0, |m, v| v.abs().max(m))).collect()
}

fn describe(name: &str, features: &[f32], f: usize) {
    let (linf, _) = median_and_p90(row_linf(features, f));
    let mean_abs = features.iter().map(|v| v.abs()).sum::<f32>() / features.len() as f32;
    println!("{name:>10} features: mean |x| {mean_abs:.4}, median L-inf norm {linf:.4}");
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 2, "usage: feature_shift <atd weights> [steps] [images]");
    let steps: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let n: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;
    let device = Device::flex();
    let training = Model::load(Path::new(&args[1]), &device.clone().autodiff())?;
    let model = training.valid();
    let f = model.card.extractor.feature_dim();
    let data = dataset::data_dir(None);
    let idx: Vec<usize> = (0..n).collect();
    let cfg = PgdConfig::new(8.0 / 255.0, steps);
    println!("PGD-{steps} at 8/255 on the ATD logit, {n} images each");
    for (name, file, direction) in
        [("CIFAR-10", "cifar10-train.zip", Direction::Out), ("Food-101", "food101-32.bin", Direction::In)]
    {
        let x = dataset::images(&dataset::load_set(&data, file)?, &idx, None, &device);
        let adversarial = AtdTraining::attack(&model, &x, direction, &cfg);
        let (clean, attacked) = (to_vec(model.features(x)), to_vec(model.features(adversarial)));
        describe(name, &clean, f);
        let shift: Vec<f32> = clean.iter().zip(&attacked).map(|(a, b)| b - a).collect();
        let (linf, linf90) = median_and_p90(row_linf(&shift, f));
        let (l2, _) = median_and_p90(shift.chunks(f).map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt()).collect());
        println!("{name:>10} shift:    L-inf median {linf:.4} (90th percentile {linf90:.4}), L2 median {l2:.4}");
    }
    let (Some(generator), Some(spec)) = (&training.net.generator, &training.card.generator) else {
        anyhow::bail!("{} has no generator", args[1]);
    };
    let dim = spec.noise_dim;
    let mut rng = Rng::new(1);
    let noise = tensor_from((0..n * dim).map(|_| rng.normal()).collect(), [n, dim], &device.autodiff());
    describe("generated", &to_vec(generator.forward(noise)), f);
    Ok(())
}
