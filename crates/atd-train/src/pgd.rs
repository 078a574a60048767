//! L-infinity attacks, generic over the objective: PGD (signed steps, projection onto the
//! eps-ball around the clean input and onto [0,1], uniform random start, restarts keep the
//! per-sample best final iterate, or optionally the best point of any step), APGD (Croce and
//! Hein 2020: momentum, step-size halving at checkpoints, best-point tracking), FGSM and random
//! sign noise. Models are in eval mode.

use burn::tensor::{Bool, Tensor};

use atd_core::attack::AttackSpec;

use crate::model::{tensor_from, to_vec};

/// An attack as the Burn attacks run it: the shared budget and schedule plus the box the inputs
/// live in and which point of the run each sample returns.
#[derive(Clone, Debug, PartialEq)]
pub struct PgdConfig {
    pub attack: AttackSpec,
    /// The box the inputs live in: [0, 1] for images; unbounded for features.
    pub bounds: (f32, f32),
    /// Return each sample's best point over every step (as the WGSL engine and the page do),
    /// not the last iterate of each restart (the paper's PGD, what evaluations use unless asked).
    pub best_of_steps: bool,
}

impl From<AttackSpec> for PgdConfig {
    /// On images, returning the last iterate of each restart (the paper's PGD).
    fn from(attack: AttackSpec) -> Self {
        Self { attack, bounds: (0.0, 1.0), best_of_steps: false }
    }
}

impl PgdConfig {
    /// The paper's setting: step size 2.5 * eps / steps, one random start, seed 0.
    pub fn new(eps: f32, steps: usize) -> Self {
        AttackSpec::new(eps, steps).into()
    }

    /// Every setting as text, for cache keys (f32 `Display` is the shortest exact form).
    pub fn key(&self) -> String {
        let AttackSpec { eps, steps, restarts, random_start, seed, .. } = &self.attack;
        let (bounds, best_of_steps) = (self.bounds, self.best_of_steps);
        format!(
            "eps={eps} steps={steps} step={} restarts={restarts} random_start={random_start} seed={seed} bounds={},{} best={best_of_steps}",
            self.attack.step_size(),
            bounds.0,
            bounds.1
        )
    }
}

/// Something to maximise, per sample, as a differentiable function of the input images.
pub trait Objective {
    /// `[B, 3, H, W]` inputs to `[B]` values; higher is better for the attacker.
    fn value(&self, x: Tensor<4>) -> Tensor<1>;
}

impl<F: Fn(Tensor<4>) -> Tensor<1>> Objective for F {
    fn value(&self, x: Tensor<4>) -> Tensor<1> {
        self(x)
    }
}

/// d objective / d input, summed over the batch (samples are independent in eval mode).
pub fn input_gradient(objective: &impl Objective, x: &Tensor<4>) -> Tensor<4> {
    value_and_gradient(objective, x).1
}

/// The per-sample objective (read back) and its input gradient, from one forward and backward.
pub fn value_and_gradient(objective: &impl Objective, x: &Tensor<4>) -> (Vec<f32>, Tensor<4>) {
    let leaf = x.clone().detach().autodiff().require_grad();
    let value = objective.value(leaf.clone());
    let grads = value.clone().sum().backward();
    (to_vec(value.detach()), leaf.grad(&grads).expect("the objective depends on the input").detach())
}

/// `x` plus `shape(u)` of the seeded noise `u` in [-1, 1) that the WGSL engine draws too
/// (`atd_core::noise`), clamped to `bounds`.
fn plus_noise(x: &Tensor<4>, seed: u32, shape: impl Fn(f32) -> f32, bounds: (f32, f32)) -> Tensor<4> {
    let dims = x.dims();
    let n: usize = dims.iter().product();
    let noise: Vec<f32> = (0..n).map(|i| shape(atd_core::noise::noise(seed, i as u32))).collect();
    (x.clone() + tensor_from(noise, dims, &x.device())).clamp(bounds.0, bounds.1)
}

/// The uniform random start, identical to the WGSL engine's for this seed.
fn random_start(x: &Tensor<4>, cfg: &PgdConfig, seed: u32) -> Tensor<4> {
    plus_noise(x, seed, |u| u * cfg.attack.eps, cfg.bounds)
}

/// A `[B, 3, H, W]` mask that is `rows[b]` across all of sample b.
fn row_mask(rows: &[bool], dims: [usize; 4], device: &burn::tensor::Device) -> Tensor<4, Bool> {
    let values = rows.iter().map(|&r| if r { 1.0 } else { 0.0 }).collect();
    tensor_from(values, [dims[0], 1, 1, 1], device).greater_elem(0.5).expand(dims)
}

/// Project `x_adv` onto the eps-ball around `x` and onto the input box (`cfg.bounds`).
pub fn project(x_adv: Tensor<4>, x: &Tensor<4>, cfg: &PgdConfig) -> Tensor<4> {
    x_adv.max_pair(x.clone() - cfg.attack.eps).min_pair(x.clone() + cfg.attack.eps).clamp(cfg.bounds.0, cfg.bounds.1)
}

pub struct PgdResult {
    pub adversarial: Tensor<4>,
    /// Objective at the returned images.
    pub objective: Tensor<1>,
}

/// Run PGD from the clean images `x` (plain, non-autodiff tensor in [0,1]).
/// `on_step(restart, step)` is called after every step (for progress bars).
pub fn pgd(
    objective: &impl Objective,
    x: &Tensor<4>,
    cfg: &PgdConfig,
    mut on_step: impl FnMut(usize, usize),
) -> PgdResult {
    let x = x.clone().detach();
    let mut best: Option<(Tensor<4>, Tensor<1>)> = None;
    for restart in 0..cfg.attack.restarts.max(1) {
        let mut x_adv = if cfg.attack.random_start && cfg.attack.eps > 0.0 {
            random_start(&x, cfg, restart_seed(cfg, restart))
        } else {
            x.clone()
        };
        for step in 0..cfg.attack.steps {
            let (value, g) = value_and_gradient(objective, &x_adv);
            if cfg.best_of_steps {
                let value = tensor_from(value, [x_adv.dims()[0]], &x_adv.device());
                best = Some(keep_better(best, x_adv.clone(), value));
            }
            x_adv = project(x_adv + g.sign() * cfg.attack.step_size(), &x, cfg);
            on_step(restart, step);
        }
        let value = objective.value(x_adv.clone()).detach();
        best = Some(keep_better(best, x_adv, value));
    }
    let (adversarial, objective) = best.expect("at least one restart");
    PgdResult { adversarial, objective }
}

fn restart_seed(cfg: &PgdConfig, restart: usize) -> u32 {
    cfg.attack.seed.wrapping_add(restart as u32)
}

/// The per-sample better of the best so far and a new candidate.
fn keep_better(best: Option<(Tensor<4>, Tensor<1>)>, x: Tensor<4>, value: Tensor<1>) -> (Tensor<4>, Tensor<1>) {
    match best {
        None => (x, value),
        Some((best_x, best_v)) => {
            let dims = x.dims();
            let better = value.clone().greater(best_v.clone());
            let mask4 = better.clone().reshape([dims[0], 1, 1, 1]).expand(dims);
            (best_x.mask_where(mask4, x), best_v.mask_where(better, value))
        }
    }
}

/// APGD (Croce and Hein 2020, the L-infinity version of the AutoAttack code): step size 2 eps,
/// momentum 0.75 after the first step, checkpoints after 22% of the steps and then ever shorter
/// intervals (by 3% of the steps, at least 6%); at a checkpoint a sample halves its step size
/// and restarts from its best point when its objective rose in at most 75% of the steps since
/// the last checkpoint, or when it did not improve and the step was not halved last time.
/// Returns the best point of each sample (over `cfg.attack.restarts` random starts); the step size
/// is not used.
pub fn apgd(
    objective: &impl Objective,
    x: &Tensor<4>,
    cfg: &PgdConfig,
    mut on_step: impl FnMut(usize, usize),
) -> PgdResult {
    let x = x.clone().detach();
    let (dims, device) = (x.dims(), x.device());
    let b = dims[0];
    let n_iter = cfg.attack.steps;
    let (first_window, min_window, shrink) =
        ((n_iter * 22 / 100).max(1), (n_iter * 6 / 100).max(1), (n_iter * 3 / 100).max(1));
    let mut best: Option<(Tensor<4>, Tensor<1>)> = None;
    for restart in 0..cfg.attack.restarts.max(1) {
        let mut x_cur = if cfg.attack.random_start && cfg.attack.eps > 0.0 {
            random_start(&x, cfg, restart_seed(cfg, restart))
        } else {
            x.clone()
        };
        let (mut f_cur, mut g_cur) = value_and_gradient(objective, &x_cur);
        let mut x_prev = x_cur.clone();
        let (mut x_best, mut g_best, mut f_best) = (x_cur.clone(), g_cur.clone(), f_cur.clone());
        let mut eta = vec![2.0 * cfg.attack.eps; b];
        let (mut window, mut since_check) = (first_window, 0);
        let mut rises = vec![0usize; b];
        let mut f_best_at_check = f_best.clone();
        let mut halved_at_check = vec![false; b];
        for step in 0..n_iter {
            let eta4 = tensor_from(eta.clone(), [b, 1, 1, 1], &device);
            let z = project(x_cur.clone() + g_cur.clone().sign() * eta4, &x, cfg);
            let x_next = if step == 0 {
                z
            } else {
                project(x_cur.clone() + (z - x_cur.clone()) * 0.75 + (x_cur.clone() - x_prev) * 0.25, &x, cfg)
            };
            let (f_next, g_next) = value_and_gradient(objective, &x_next);
            for i in 0..b {
                rises[i] += (f_next[i] > f_cur[i]) as usize;
            }
            let improved: Vec<bool> = f_next.iter().zip(&f_best).map(|(n, b)| n > b).collect();
            let mask = row_mask(&improved, dims, &device);
            x_best = x_best.mask_where(mask.clone(), x_next.clone());
            g_best = g_best.mask_where(mask, g_next.clone());
            for i in 0..b {
                if improved[i] {
                    f_best[i] = f_next[i];
                }
            }
            (x_prev, x_cur, f_cur, g_cur) = (x_cur, x_next, f_next, g_next);
            since_check += 1;
            if since_check == window {
                let halve: Vec<bool> = (0..b)
                    .map(|i| {
                        (rises[i] as f32) <= 0.75 * window as f32
                            || (!halved_at_check[i] && f_best_at_check[i] >= f_best[i])
                    })
                    .collect();
                let mask = row_mask(&halve, dims, &device);
                x_cur = x_cur.mask_where(mask.clone(), x_best.clone());
                g_cur = g_cur.mask_where(mask, g_best.clone());
                for i in 0..b {
                    if halve[i] {
                        eta[i] /= 2.0;
                        f_cur[i] = f_best[i];
                    }
                }
                (halved_at_check, f_best_at_check) = (halve, f_best.clone());
                rises.iter_mut().for_each(|r| *r = 0);
                (window, since_check) = (window.saturating_sub(shrink).max(min_window), 0);
            }
            on_step(restart, step);
        }
        let value = tensor_from(f_best, [b], &device);
        best = Some(keep_better(best, x_best, value));
    }
    let (adversarial, objective) = best.expect("at least one restart");
    PgdResult { adversarial, objective }
}

/// FGSM: one signed step of size eps from the clean image (no random start).
pub fn fgsm(objective: &impl Objective, x: &Tensor<4>, cfg: &PgdConfig) -> Tensor<4> {
    let g = input_gradient(objective, x);
    project(x.clone() + g.sign() * cfg.attack.eps, x, cfg)
}

/// N-FGSM (de Jorge et al. 2022), a training attack: uniform noise in [-noise, noise], then one
/// signed step of `step`, clamped to [0,1] but not projected onto an eps-ball, so the perturbation
/// reaches noise + step (3 eps in the paper's setting, noise 2 eps and step eps). The larger
/// perturbation is what keeps single-step training from catastrophic overfitting.
pub fn noisy_fgsm(objective: &impl Objective, x: &Tensor<4>, noise: f32, step: f32, seed: u32) -> Tensor<4> {
    let x_noisy = plus_noise(x, seed, |u| u * noise, (0.0, 1.0));
    let g = input_gradient(objective, &x_noisy);
    (x_noisy + g.sign() * step).clamp(0.0, 1.0)
}

/// Random corners of the eps-ball (each pixel moved by +eps or -eps, seeded), clamped to [0,1]:
/// the perturbation a detector must shrug off if a white-box attack is to mean anything.
pub fn sign_noise(x: &Tensor<4>, eps: f32, seed: u32) -> Tensor<4> {
    plus_noise(x, seed, |u| if u < 0.0 { -eps } else { eps }, (0.0, 1.0))
}
