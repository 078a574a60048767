//! `shaders/attack.wgsl`: the attack objective and its gradient seed, the random start, the PGD
//! step, the per-step records and the best point kept: the parameter struct, the op
//! constructors and the CPU reference.

use super::{Kernel, KernelParams, Op, PARAMS_BYTES, ix, u};

kernel_params! {
    /// `shaders/attack.wgsl`: the objective and its gradient seed, the random start, the PGD
    /// step, the per-step records and the best point kept.
    AttackParams {
        /// Clean images (the centre of the eps-ball).
        clean: u32,
        /// The images being attacked.
        x: u32,
        /// d objective / d logits (objective) or d objective / d x (PGD step).
        grad: u32,
        objective: u32,
        best_x: u32,
        best_objective: u32,
        logits: u32,
        history: u32,
        /// Samples (objective, record, keep_best) or values (pgd_init, pgd_step).
        count: u32,
        /// Classes per logit row (objective), values per sample (keep_best).
        width: u32,
        /// objective: 1 for log MSP, 0 for the logit itself; keep_best: the first restart.
        flag: u32,
        seed: u32,
        /// +1 raises the score, -1 lowers it.
        sign: f32,
        eps: f32,
        /// The PGD step size.
        alpha: f32,
        pad0: u32,
    }
}

impl Op {
    pub fn objective(
        logits: usize,
        objective: usize,
        grad: usize,
        batch: usize,
        classes: usize,
        msp: bool,
        sign: f32,
    ) -> Self {
        let p = AttackParams {
            logits: u(logits),
            objective: u(objective),
            grad: u(grad),
            count: u(batch),
            width: u(classes),
            flag: msp as u32,
            sign,
            ..Default::default()
        };
        Op::new(Kernel::Objective, batch, p)
    }

    pub fn pgd_init(x0: usize, x: usize, n: usize, seed: u32, eps: f32) -> Self {
        Op::new(
            Kernel::PgdInit,
            n,
            AttackParams { clean: u(x0), x: u(x), count: u(n), seed, eps, ..Default::default() },
        )
    }

    pub fn pgd_step(x0: usize, x: usize, g: usize, n: usize, eps: f32, alpha: f32) -> Self {
        let p = AttackParams { clean: u(x0), x: u(x), grad: u(g), count: u(n), eps, alpha, ..Default::default() };
        Op::new(Kernel::PgdStep, n, p)
    }

    pub fn record(objective: usize, hist: usize, batch: usize) -> Self {
        let p = AttackParams { objective: u(objective), history: u(hist), count: u(batch), ..Default::default() };
        Op::new(Kernel::Record, batch, p)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn keep_best(
        x: usize,
        objective: usize,
        best_x: usize,
        best_objective: usize,
        batch: usize,
        per: usize,
        first: bool,
        sign: f32,
    ) -> Self {
        let p = AttackParams {
            x: u(x),
            objective: u(objective),
            best_x: u(best_x),
            best_objective: u(best_objective),
            count: u(batch),
            width: u(per),
            flag: first as u32,
            sign,
            ..Default::default()
        };
        Op::new(Kernel::KeepBest, batch, p)
    }
}

/// The CPU reference of this family's kernels: the same arithmetic as the WGSL.
pub(super) fn run(op: &Op, a: &mut [f32]) {
    let threads = op.threads as usize;
    match op.kernel {
        Kernel::Objective => {
            let p: AttackParams = op.params();
            let (logits, objective, grad, classes) = (ix(p.logits), ix(p.objective), ix(p.grad), ix(p.width));
            for n in 0..threads {
                let base = logits + n * classes;
                if p.flag == 0 {
                    a[objective + n] = a[base];
                    a[grad + n] = p.sign;
                    continue;
                }
                let (mut best, mut m) = (0, a[base]);
                for c in 1..classes {
                    if a[base + c] > m {
                        m = a[base + c];
                        best = c;
                    }
                }
                let total: f32 = (0..classes).map(|c| (a[base + c] - m).exp()).fold(0.0, |s, v| s + v);
                a[objective + n] = -total.ln();
                for c in 0..classes {
                    let prob = (a[base + c] - m).exp() / total;
                    a[grad + n * classes + c] = p.sign * (if c == best { 1.0 } else { 0.0 } - prob);
                }
            }
        }
        Kernel::PgdInit => {
            let p: AttackParams = op.params();
            let (x0, x) = (ix(p.clean), ix(p.x));
            for i in 0..threads {
                a[x + i] = (a[x0 + i] + p.eps * atd_core::noise::noise(p.seed, i as u32)).clamp(0.0, 1.0);
            }
        }
        Kernel::PgdStep => {
            let p: AttackParams = op.params();
            let (x0, x, g) = (ix(p.clean), ix(p.x), ix(p.grad));
            for i in 0..threads {
                let clean = a[x0 + i];
                let stepped = a[x + i] + p.alpha * sign(a[g + i]);
                a[x + i] = stepped.clamp(clean - p.eps, clean + p.eps).clamp(0.0, 1.0);
            }
        }
        Kernel::Record => {
            let p: AttackParams = op.params();
            for n in 0..threads {
                a[ix(p.history) + n] = a[ix(p.objective) + n];
            }
        }
        Kernel::KeepBest => {
            let p: AttackParams = op.params();
            let (x, objective, best_x, best_objective, per) =
                (ix(p.x), ix(p.objective), ix(p.best_x), ix(p.best_objective), ix(p.width));
            for n in 0..threads {
                // Written as in WGSL: a NaN objective never replaces the best.
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                if p.flag == 0 && !(p.sign * a[objective + n] > p.sign * a[best_objective + n]) {
                    continue;
                }
                a[best_objective + n] = a[objective + n];
                a.copy_within(x + n * per..x + (n + 1) * per, best_x + n * per);
            }
        }
        other => unreachable!("{other:?} is not an attack kernel"),
    }
}

/// WGSL's `sign`: 0 at 0.
fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}
