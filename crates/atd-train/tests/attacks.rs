//! PGD and the detectors' input gradients.

mod common;

use atd_core::attack::AttackSpec;
use atd_core::card::{Activation, ExtractorSpec};
use atd_train::model::{tensor_from, to_vec};
use atd_train::pgd::{PgdConfig, apgd, fgsm, input_gradient, noisy_fgsm, pgd, sign_noise};
use atd_train::rng::Rng;
use atd_train::{Detector, Model};
use burn::tensor::Tensor;
use common::*;

fn smooth_extractor() -> ExtractorSpec {
    // Swish keeps the score smooth, so central differences are meaningful.
    ExtractorSpec { activation: Activation::Swish, ..ExtractorSpec::tiny() }
}

#[test]
fn pgd_stays_inside_the_eps_ball_and_the_image_box() {
    let model = random_model(full_card(ExtractorSpec::tiny(), 3), 11).valid();
    let device = device();
    let x = random_images(6, 5, &device);
    for (d, eps, restarts) in
        [(Detector::Atd, 8.0 / 255.0, 1), (Detector::Msp, 16.0 / 255.0, 2), (Detector::Rmd, 0.5, 1)]
    {
        let cfg = PgdConfig::from(AttackSpec::new(eps, 5).with_restarts(restarts).with_seed(3));
        let objective = |x: Tensor<4>| model.score_logit(d, x).neg();
        let adv = to_vec(pgd(&objective, &x, &cfg, |_, _| {}).adversarial);
        let clean = to_vec(x.clone());
        let worst = adv.iter().zip(&clean).map(|(a, c)| (a - c).abs()).fold(0f32, f32::max);
        assert!(worst <= eps * (1.0 + 1e-6), "{d:?}: |delta| = {worst} > eps = {eps}");
        assert!(worst >= 0.5 * eps, "{d:?}: the attack barely moved ({worst})");
        assert!(adv.iter().all(|v| (0.0..=1.0).contains(v)), "{d:?}: left [0,1]");
    }
}

fn check_gradient(model: &Model, d: Detector, seed: u64) {
    check_gradient_of(&|x: Tensor<4>| model.score_logit(d, x), &format!("{d:?}"), seed);
}

/// Central differences along random directions against the analytic directional derivative.
fn check_gradient_of(objective: &dyn Fn(Tensor<4>) -> Tensor<1>, d: &str, seed: u64) {
    let device = device();
    let x = random_images(2, seed, &device).clamp(0.05, 0.95); // stay off the box edges
    let g = to_vec(input_gradient(&objective, &x));
    assert!(g.iter().any(|v| *v != 0.0), "{d}: zero input gradient");
    let mut rng = Rng::new(seed);
    // MSP, MD, RMD and OpenMax take a max/min over classes: where the winning class changes
    // within the finite-difference step, the score has a kink and differences are meaningless.
    // Such directions are detected (two Richardson estimates at different steps disagree) and
    // skipped; three smooth directions must match.
    let (mut checked, mut tried) = (0, 0);
    while checked < 3 {
        tried += 1;
        assert!(tried <= 12, "{d}: no smooth direction found in {tried} tries");
        // A random direction tilted towards the gradient, so the derivative along it is well above
        // f32 noise even where the score is flat in most directions.
        let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt();
        let tilt = (g.len() as f32).sqrt() / norm;
        let dir: Vec<f32> = g.iter().map(|gi| rng.normal() + gi * tilt).collect();
        let analytic: f32 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
        assert!(analytic.abs() > 1e-3, "{d}: directional derivative {analytic} too small to check");
        let central = |h: f32| {
            let step = tensor_from(dir.iter().map(|v| v * h).collect(), x.dims(), &device);
            let plus: f32 = to_vec(objective(x.clone() + step.clone())).iter().sum();
            let minus: f32 = to_vec(objective(x.clone() - step)).iter().sum();
            (plus - minus) / (2.0 * h)
        };
        // A step that moves the score by about 0.005: far above f32 rounding, small enough to stay
        // linear; Richardson extrapolation then cancels the O(h^2) error of central differences.
        let h = (0.005 / analytic.abs()).clamp(1e-4, 1e-3);
        // Steeper scores (OpenMax's Weibull CDF) need smaller steps to look linear.
        let smooth = [1.0, 0.1, 0.01].into_iter().find_map(|scale| {
            let h = h * scale;
            let (c1, c2, c4) = (central(h), central(h / 2.0), central(h / 4.0));
            let (coarse, fine) = ((4.0 * c2 - c1) / 3.0, (4.0 * c4 - c2) / 3.0);
            let tol = 0.02 * analytic.abs().max(fine.abs()) + 1e-4;
            ((coarse - fine).abs() <= tol).then_some((fine, tol))
        });
        let Some((fine, tol)) = smooth else { continue };
        assert!((fine - analytic).abs() <= tol, "{d}: finite difference {fine} vs gradient {analytic}");
        checked += 1;
    }
    eprintln!(
        "{d}: gradient matches finite differences along {checked} of {tried} directions (the others cross a kink)"
    );
}

#[test]
fn every_detector_gradient_matches_finite_differences() {
    let model = random_model(full_card(smooth_extractor(), 3), 21).valid();
    // An ATOM file: a classifier with an outlier class (and no class-conditional baselines).
    let mut outlier_card = full_card(smooth_extractor(), 3);
    outlier_card.outlier_class = true;
    outlier_card.baselines = None;
    let outlier_model = random_model(outlier_card, 22).valid();
    assert_eq!(outlier_model.detectors(), [Detector::Atd, Detector::OutlierClass]);
    for (i, d) in Detector::ALL.into_iter().enumerate() {
        let model = if d == Detector::OutlierClass { &outlier_model } else { &model };
        check_gradient(model, d, 100 + i as u64);
    }
}

#[test]
fn a_denoising_extractor_gradient_matches_finite_differences() {
    let model = denoising_model(smooth_extractor(), 23).valid();
    for (i, d) in [Detector::Msp, Detector::Atd, Detector::Md].into_iter().enumerate() {
        check_gradient(&model, d, 200 + i as u64);
    }
}

#[test]
fn the_outlier_class_score_is_one_minus_its_softmax_probability() {
    let mut card = full_card(ExtractorSpec::tiny(), 3);
    card.outlier_class = true;
    card.baselines = None;
    let model = random_model(card, 5).valid();
    let x = random_images(4, 6, &device());
    let logits = to_vec(model.logits(x.clone()));
    let scores = to_vec(model.score(Detector::OutlierClass, x));
    for (row, score) in logits.chunks(3).zip(scores) {
        let total: f32 = row.iter().map(|z| z.exp()).sum();
        let expected = 1.0 - row[2].exp() / total;
        assert!((score - expected).abs() < 1e-5, "{score} vs {expected}");
    }
}

#[test]
fn restarts_never_lose_to_a_single_run() {
    let model = random_model(full_card(ExtractorSpec::tiny(), 3), 4).valid();
    let x = random_images(8, 9, &device());
    let objective = |x: Tensor<4>| model.score_logit(Detector::Atd, x).neg();
    let one = to_vec(pgd(&objective, &x, &AttackSpec::new(4.0 / 255.0, 3).with_seed(1).into(), |_, _| {}).objective);
    let three = to_vec(
        pgd(&objective, &x, &AttackSpec::new(4.0 / 255.0, 3).with_seed(1).with_restarts(3).into(), |_, _| {}).objective,
    );
    assert!(one.iter().zip(&three).all(|(a, b)| b >= a), "{one:?} vs {three:?}");
}

#[test]
fn cross_entropy_matches_its_definition_and_pgd_raises_it() {
    let model = random_model(full_card(smooth_extractor(), 3), 8).valid();
    let device = device();
    let x = random_images(4, 12, &device);
    let labels = [0usize, 1, 2, 1];
    let logits = to_vec(model.logits(x.clone()));
    let ce = to_vec(model.cross_entropy(x.clone(), &labels));
    for (i, row) in logits.chunks_exact(3).enumerate() {
        let lse = row.iter().map(|v| v.exp()).sum::<f32>().ln();
        assert!((ce[i] - (lse - row[labels[i]])).abs() < 1e-5, "sample {i}");
    }
    check_gradient_of(&|x: Tensor<4>| model.cross_entropy(x, &labels[..2]), "cross-entropy", 31);
    let objective = |x: Tensor<4>| model.cross_entropy(x, &labels);
    let attacked = to_vec(pgd(&objective, &x, &PgdConfig::new(8.0 / 255.0, 5), |_, _| {}).objective);
    assert!(attacked.iter().zip(&ce).all(|(a, c)| a > c), "{ce:?} -> {attacked:?}");
}

/// f(x) = sum(w * x) per sample: its maximum over the eps-ball and the [0,1] box is known exactly.
fn linear_objective(weights: Vec<f32>, n: usize) -> impl Fn(Tensor<4>) -> Tensor<1> {
    let w = tensor_from(weights, [1, 3, 32, 32], &device());
    move |x: Tensor<4>| (x * w.clone()).sum_dim(3).sum_dim(2).sum_dim(1).reshape([n])
}

fn ball_corner(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    x.iter().zip(w.iter().cycle()).map(|(x, w)| (x + eps * w.signum()).clamp(0.0, 1.0)).collect()
}

#[test]
fn apgd_and_fgsm_reach_the_optimum_of_a_linear_objective() {
    let mut rng = Rng::new(5);
    let w: Vec<f32> = (0..3 * 32 * 32).map(|_| rng.normal()).collect();
    let objective = linear_objective(w.clone(), 3);
    let x = random_images(3, 6, &device());
    let eps = 8.0 / 255.0;
    let optimum = ball_corner(&to_vec(x.clone()), &w, eps);
    let cfg = PgdConfig::from(AttackSpec::new(eps, 12).with_seed(2).with_restarts(2));
    let result = apgd(&objective, &x, &cfg, |_, _| {});
    let close = |a: &[f32]| a.iter().zip(&optimum).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(
        close(&to_vec(result.adversarial.clone())) < 1e-6,
        "APGD missed the corner by {}",
        close(&to_vec(result.adversarial.clone()))
    );
    // The reported objective is the objective of the returned images.
    let recomputed = to_vec(objective(result.adversarial));
    for (a, b) in to_vec(result.objective).iter().zip(&recomputed) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
    }
    assert!(close(&to_vec(fgsm(&objective, &x, &cfg))) < 1e-6, "FGSM is one full step to the corner");
}

#[test]
fn apgd_stays_in_the_ball_and_beats_its_random_start() {
    let model = random_model(full_card(ExtractorSpec::tiny(), 3), 13).valid();
    let x = random_images(6, 14, &device());
    let eps = 8.0 / 255.0;
    let objective = |x: Tensor<4>| model.score_logit(Detector::Atd, x).neg();
    let cfg = PgdConfig::from(AttackSpec::new(eps, 10).with_seed(4));
    let result = apgd(&objective, &x, &cfg, |_, _| {});
    let (adv, clean) = (to_vec(result.adversarial), to_vec(x.clone()));
    let worst = adv.iter().zip(&clean).map(|(a, c)| (a - c).abs()).fold(0f32, f32::max);
    assert!(
        worst <= eps * (1.0 + 1e-6) && adv.iter().all(|v| (0.0..=1.0).contains(v)),
        "left the ball or the box: {worst}"
    );
    // No steps: the random start itself.
    let start = to_vec(
        apgd(&objective, &x, &PgdConfig::from(AttackSpec { steps: 0, ..cfg.attack.clone() }), |_, _| {}).objective,
    );
    let end = to_vec(result.objective);
    assert!(end.iter().zip(&start).all(|(e, s)| e >= s), "{start:?} -> {end:?}");
    assert!(end.iter().zip(&start).any(|(e, s)| e > s), "APGD never improved on its start");
}

#[test]
fn sign_noise_moves_every_pixel_by_eps_unless_clamped() {
    let x = random_images(2, 15, &device());
    let eps = 4.0 / 255.0;
    let (noisy, clean) = (to_vec(sign_noise(&x, eps, 9)), to_vec(x));
    for (n, c) in noisy.iter().zip(&clean) {
        let up = (c + eps).min(1.0);
        let down = (c - eps).max(0.0);
        assert!((n - up).abs() < 1e-6 || (n - down).abs() < 1e-6, "{c} -> {n}");
    }
    let ups = noisy.iter().zip(&clean).filter(|(n, c)| n > c).count();
    assert!((2500..3650).contains(&ups), "signs are not balanced: {ups} of {} up", noisy.len());
}

#[test]
fn noisy_fgsm_steps_up_the_gradient_from_its_noise_without_projecting() {
    let mut rng = Rng::new(16);
    let w: Vec<f32> = (0..3 * 32 * 32).map(|_| rng.normal()).collect();
    let objective = linear_objective(w.clone(), 2);
    let x = random_images(2, 17, &device());
    let eps = 8.0 / 255.0;
    let clean = to_vec(x.clone());
    // A zero step returns the noisy start, so the step itself can be checked against it.
    let start = to_vec(noisy_fgsm(&objective, &x, 2.0 * eps, 0.0, 3));
    let adv = to_vec(noisy_fgsm(&objective, &x, 2.0 * eps, eps, 3));
    for ((a, s), w) in adv.iter().zip(&start).zip(w.iter().cycle()) {
        assert!((0.0..=1.0).contains(a), "left [0,1]: {a}");
        assert!((a - (s + eps * w.signum()).clamp(0.0, 1.0)).abs() < 1e-6, "{s} -> {a} against w = {w}");
    }
    let deltas: Vec<f32> = adv.iter().zip(&clean).map(|(a, c)| (a - c).abs()).collect();
    assert!(deltas.iter().all(|d| *d <= 3.0 * eps * (1.0 + 1e-5)), "beyond noise + step");
    // Not projected: a good share of pixels end beyond eps, as the method intends.
    let beyond = deltas.iter().filter(|d| **d > eps * 1.01).count();
    assert!(beyond > deltas.len() / 4, "only {beyond} of {} pixels beyond eps", deltas.len());
    // The noise is seeded: another seed, another start.
    assert_ne!(start, to_vec(noisy_fgsm(&objective, &x, 2.0 * eps, 0.0, 4)));
}
