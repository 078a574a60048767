//! PGD against a small detector trained here: it must lower in-distribution scores and raise
//! OOD scores, and a stronger attack must hurt at least as much.

mod common;

use atd_core::card::ExtractorSpec;
use atd_train::model::tensor_from;
use atd_train::pgd::{PgdConfig, pgd};
use atd_train::rng::Rng;
use atd_train::{Detector, Model};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::activation::softplus;
use common::*;

/// In-distribution: smooth colour ramps. Out: uniform noise.
fn toy_batch(n: usize, rng: &mut Rng, device: &burn::tensor::Device) -> (Tensor<4>, Tensor<4>) {
    let mut smooth = Vec::with_capacity(n * 3072);
    for _ in 0..n {
        let (base, slope) = ([rng.uniform(), rng.uniform(), rng.uniform()], rng.uniform() - 0.5);
        for channel in base {
            for _y in 0..32 {
                for x in 0..32 {
                    smooth.push((channel * 0.6 + 0.2 + slope * (x as f32 / 31.0 - 0.5) * 0.4).clamp(0.0, 1.0));
                }
            }
        }
    }
    let noise: Vec<f32> = (0..n * 3072).map(|_| rng.uniform()).collect();
    (tensor_from(smooth, [n, 3, 32, 32], device), tensor_from(noise, [n, 3, 32, 32], device))
}

fn trained_toy_detector() -> Model {
    let device = device().autodiff();
    let mut card = full_card(ExtractorSpec::tiny(), 3);
    card.baselines = None;
    card.generator = None;
    let mut model = seeded_model(card, 5, &device);
    let mut optim = AdamConfig::new().init();
    let mut rng = Rng::new(17);
    for _ in 0..80 {
        let (x_in, x_out) = toy_batch(16, &mut rng, &device);
        // One forward over both halves: in training mode BatchNorm uses batch statistics, which
        // would erase the difference between two separately normalised batches.
        let z = model.score_logit(Detector::Atd, Tensor::cat(vec![x_in, x_out], 0));
        let (z_in, z_out) = (z.clone().narrow(0, 0, 16), z.narrow(0, 16, 16));
        let loss = softplus(z_in.neg(), 1.0).mean() + softplus(z_out, 1.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model.net);
        model.net = optim.step(1e-2, model.net, grads);
    }
    model.valid()
}

#[test]
fn pgd_lowers_in_scores_and_raises_ood_scores_of_a_trained_detector() {
    let model = trained_toy_detector();
    let (x_in, x_out) = toy_batch(12, &mut Rng::new(99), &device());
    let clean_in = scores(&model, Detector::Atd, &x_in);
    let clean_out = scores(&model, Detector::Atd, &x_out);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(
        mean(&clean_in) > 0.8 && mean(&clean_out) < 0.2,
        "the toy detector did not learn: {clean_in:?} {clean_out:?}"
    );

    let down = |x: Tensor<4>| model.score_logit(Detector::Atd, x).neg();
    let up = |x: Tensor<4>| model.score_logit(Detector::Atd, x);
    let attack = |cfg: &PgdConfig| {
        let adv_in = pgd(&down, &x_in, cfg, |_, _| {}).adversarial;
        let adv_out = pgd(&up, &x_out, cfg, |_, _| {}).adversarial;
        (scores(&model, Detector::Atd, &adv_in), scores(&model, Detector::Atd, &adv_out))
    };
    let (weak_in, weak_out) = attack(&PgdConfig::new(2.0 / 255.0, 5));
    let (strong_in, strong_out) = attack(&PgdConfig::new(8.0 / 255.0, 20));
    for i in 0..clean_in.len() {
        assert!(strong_in[i] < clean_in[i], "in sample {i}: {} -> {}", clean_in[i], strong_in[i]);
        assert!(strong_out[i] > clean_out[i], "out sample {i}: {} -> {}", clean_out[i], strong_out[i]);
    }
    // Stronger attack (larger eps, more steps) moves the scores further on average.
    assert!(mean(&strong_in) < mean(&weak_in) && mean(&strong_out) > mean(&weak_out));
    eprintln!(
        "toy detector: mean in score {:.4} -> {:.4}, out {:.4} -> {:.4}",
        mean(&clean_in),
        mean(&strong_in),
        mean(&clean_out),
        mean(&strong_out)
    );
}
