//! L-infinity PGD, generic over the objective. Each step: gradient of the per-sample objective
//! with respect to the input (models in eval mode), signed step, projection onto the eps-ball
//! around the clean input and onto [0,1]. Uniform random start; restarts keep the per-sample
//! best final iterate.

use burn::tensor::Tensor;

use crate::model::tensor_from;

#[derive(Clone, Debug, PartialEq)]
pub struct PgdConfig {
    pub eps: f32,
    pub steps: usize,
    pub step_size: f32,
    pub restarts: usize,
    pub random_start: bool,
    pub seed: u64,
}

impl PgdConfig {
    /// The paper's setting: step size 2.5 * eps / steps, one random start.
    pub fn new(eps: f32, steps: usize) -> Self {
        Self { eps, steps, step_size: 2.5 * eps / steps.max(1) as f32, restarts: 1, random_start: true, seed: 0 }
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
    let leaf = x.clone().detach().autodiff().require_grad();
    let grads = objective.value(leaf.clone()).sum().backward();
    leaf.grad(&grads).expect("the objective depends on the input").detach()
}

/// Project `x_adv` onto the eps-ball around `x` and onto [0,1].
pub fn project(x_adv: Tensor<4>, x: &Tensor<4>, eps: f32) -> Tensor<4> {
    x_adv.max_pair(x.clone() - eps).min_pair(x.clone() + eps).clamp(0.0, 1.0)
}

pub struct PgdResult {
    pub adversarial: Tensor<4>,
    /// Objective at the returned images.
    pub objective: Tensor<1>,
}

/// Run PGD from the clean images `x` (plain, non-autodiff tensor in [0,1]).
/// `on_step(restart, step)` is called after every step (for progress bars).
pub fn pgd(objective: &impl Objective, x: &Tensor<4>, cfg: &PgdConfig, mut on_step: impl FnMut(usize, usize)) -> PgdResult {
    let x = x.clone().detach();
    let device = x.device();
    let dims = x.dims();
    let mut best: Option<(Tensor<4>, Tensor<1>)> = None;
    for restart in 0..cfg.restarts.max(1) {
        let mut x_adv = if cfg.random_start && cfg.eps > 0.0 {
            // The same start as the WGSL engine's for this seed (atd_core::noise).
            let seed = (cfg.seed as u32).wrapping_add(restart as u32);
            let n: usize = dims.iter().product();
            let noise: Vec<f32> = (0..n).map(|i| atd_core::noise::noise(seed, i as u32) * cfg.eps).collect();
            (x.clone() + tensor_from(noise, dims, &device)).clamp(0.0, 1.0)
        } else {
            x.clone()
        };
        for step in 0..cfg.steps {
            let g = input_gradient(objective, &x_adv);
            x_adv = project(x_adv + g.sign() * cfg.step_size, &x, cfg.eps);
            on_step(restart, step);
        }
        let value = objective.value(x_adv.clone()).detach();
        best = Some(match best {
            None => (x_adv, value),
            Some((best_x, best_v)) => {
                let better = value.clone().greater(best_v.clone());
                let mask4 = better.clone().reshape([dims[0], 1, 1, 1]).expand(dims);
                (best_x.mask_where(mask4, x_adv), best_v.mask_where(better, value))
            }
        });
    }
    let (adversarial, objective) = best.expect("at least one restart");
    PgdResult { adversarial, objective }
}
