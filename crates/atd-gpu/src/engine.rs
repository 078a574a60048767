//! The engine: a detector (ATD or MSP) from a weights file, on the GPU or on the CPU
//! reference, with `score`, `input_gradient` and the whole PGD attack. The attack loop runs on
//! the device: random start, forward, backward to the input, signed step and projection, with
//! only the per-step objective records read back (every `report_every` steps, at most
//! `HISTORY_STEPS`). The attack returns the best point it visited, not its last one.

use atd_core::IMAGE_VALUES;
use atd_core::attack::Detector;
use atd_core::weights::Weights;

use crate::gpu::{AdapterSummary, Gpu, GpuError, Resident};
use crate::kernels::{ConvStrategy, Op};
use crate::plan::{HISTORY_STEPS, Plan, PlanError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Weights(#[from] atd_core::weights::WeightsError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("expected {expected} input values ({batch} images of 3x32x32), got {found}")]
    InputSize { expected: usize, found: usize, batch: usize },
    #[error("invalid attack options: {0}")]
    Options(String),
}

pub use atd_core::attack::{AttackSpec, Direction};

/// An attack as the engine runs it, and the one request type for it: the page's worker sends
/// it as JSON (`{"direction": "out", "eps": 0.031, "steps": 100, "seed": 7}`; everything it leaves
/// out takes its default: the paper's step size, one restart, a random start, a read-back every
/// `HISTORY_STEPS` steps), the CLI builds it, and the `engine_plan` fuzz target parses it. The
/// shared budget and schedule are written flat; the engine adds the direction it pushes the
/// score and how often it reads the scores back.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackOptions {
    #[serde(flatten)]
    pub attack: AttackSpec,
    pub direction: Direction,
    /// Steps between read-backs of the scores (1..=HISTORY_STEPS): the caller sees progress,
    /// and can stop the attack, this often. Fewer read-backs are faster on a real GPU.
    #[serde(default = "history_steps")]
    pub report_every: usize,
}

fn history_steps() -> usize {
    HISTORY_STEPS
}

impl AttackOptions {
    pub fn new(attack: AttackSpec, direction: Direction) -> Self {
        Self { attack, direction, report_every: HISTORY_STEPS }
    }

    fn check(&self) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Options(m));
        self.attack.check().or_else(bad)?;
        if self.attack.eps > 1.0 {
            return bad("eps must be in [0, 1]".into());
        }
        if !(1..=HISTORY_STEPS).contains(&self.report_every) {
            return bad(format!("report_every must be in 1..={HISTORY_STEPS}"));
        }
        Ok(())
    }
}

/// Result of an attack: per sample the best point over every step of every restart (the
/// highest objective in the attack's direction), its score, and the score of every sample after
/// every step (`history[restart * (steps + 1) + t]`, t = 0 is the start).
#[derive(Clone, Debug)]
pub struct AttackResult {
    pub adversarial: Vec<f32>,
    pub scores: Vec<f32>,
    pub history: Vec<Vec<f32>>,
}

enum Backend {
    Cpu { arena: Vec<f32> },
    Gpu { gpu: Box<Gpu>, resident: Resident },
}

pub struct Engine {
    pub plan: Plan,
    backend: Backend,
}

impl Engine {
    /// The `detector` of a weights file on the GPU, for batches of `batch` images.
    /// Its forward convolutions use the kernel that suits the adapter (`ConvStrategy::for_adapter`).
    pub async fn gpu(bytes: &[u8], detector: Detector, batch: usize) -> Result<Self, EngineError> {
        Self::on_gpu(bytes, detector, batch, None).await
    }

    /// The same with the forward-convolution kernel chosen by the caller (benchmarks, tests).
    pub async fn gpu_with_conv(
        bytes: &[u8],
        detector: Detector,
        batch: usize,
        conv: ConvStrategy,
    ) -> Result<Self, EngineError> {
        Self::on_gpu(bytes, detector, batch, Some(conv)).await
    }

    async fn on_gpu(
        bytes: &[u8],
        detector: Detector,
        batch: usize,
        conv: Option<ConvStrategy>,
    ) -> Result<Self, EngineError> {
        let weights = Weights::from_bytes(bytes)?;
        let gpu = Gpu::new().await?;
        let conv = conv.unwrap_or(ConvStrategy::for_adapter(gpu.adapter.software));
        let plan = Plan::new(&weights, detector, batch, conv)?;
        let resident = gpu.upload(&plan.weights, plan.arena_len)?;
        Ok(Self { plan, backend: Backend::Gpu { gpu: Box::new(gpu), resident } })
    }

    /// The same on the CPU reference (no GPU needed; slower; every kernel computes the same sums).
    pub fn cpu(bytes: &[u8], detector: Detector, batch: usize) -> Result<Self, EngineError> {
        let plan = Plan::new(&Weights::from_bytes(bytes)?, detector, batch, ConvStrategy::Direct)?;
        let arena = vec![0.0; plan.arena_len];
        Ok(Self { plan, backend: Backend::Cpu { arena } })
    }

    /// The adapter, when on the GPU.
    pub fn adapter(&self) -> Option<&AdapterSummary> {
        match &self.backend {
            Backend::Gpu { gpu, .. } => Some(&gpu.adapter),
            Backend::Cpu { .. } => None,
        }
    }

    /// The GPU device, for fault injection (`DeviceHandle::destroy`); `None` on the CPU.
    pub fn device_handle(&self) -> Option<crate::gpu::DeviceHandle> {
        match &self.backend {
            Backend::Gpu { gpu, .. } => Some(gpu.handle()),
            Backend::Cpu { .. } => None,
        }
    }

    async fn execute(
        &mut self,
        table: &[Op],
        schedule: &[usize],
        writes: &[(usize, &[f32])],
        reads: &[(usize, usize)],
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        match &mut self.backend {
            Backend::Gpu { gpu, resident } => Ok(gpu.run(resident, table, schedule, writes, reads).await?),
            Backend::Cpu { arena } => {
                for (offset, values) in writes {
                    arena[*offset..*offset + values.len()].copy_from_slice(values);
                }
                for &i in schedule {
                    crate::kernels::run_cpu(&table[i], &self.plan.weights, arena);
                }
                Ok(reads.iter().map(|&(o, n)| arena[o..o + n].to_vec()).collect())
            }
        }
    }

    fn check_input(&self, images: &[f32]) -> Result<(), EngineError> {
        let expected = self.plan.input_len();
        if images.len() != expected {
            return Err(EngineError::InputSize { expected, found: images.len(), batch: self.plan.batch });
        }
        Ok(())
    }

    /// The unbounded objective per image (D's logit, or log MSP).
    pub async fn objective(&mut self, images: &[f32]) -> Result<Vec<f32>, EngineError> {
        self.check_input(images)?;
        let table = self.plan.forward.clone();
        let schedule: Vec<usize> = (0..table.len()).collect();
        let reads = [(self.plan.objective, self.plan.batch)];
        Ok(self.execute(&table, &schedule, &[(self.plan.input, images)], &reads).await?.remove(0))
    }

    /// The detector score per image (higher = in-distribution).
    pub async fn score(&mut self, images: &[f32]) -> Result<Vec<f32>, EngineError> {
        let objective = self.objective(images).await?;
        Ok(objective.into_iter().map(|o| self.plan.score_from_objective(o)).collect())
    }

    /// Scores and, when the file has a classifier head, each image's class probabilities (the
    /// softmax of its logits).
    pub async fn score_and_classify(
        &mut self,
        images: &[f32],
    ) -> Result<(Vec<f32>, Option<Vec<Vec<f32>>>), EngineError> {
        self.check_input(images)?;
        let table = self.plan.forward.clone();
        let schedule: Vec<usize> = (0..table.len()).collect();
        let mut reads = vec![(self.plan.objective, self.plan.batch)];
        if let Some(logits) = self.plan.class_logits {
            reads.push((logits, self.plan.batch * self.plan.classes));
        }
        let mut out = self.execute(&table, &schedule, &[(self.plan.input, images)], &reads).await?;
        let probabilities = (out.len() == 2).then(|| {
            let logits = out.pop().expect("two reads");
            logits.chunks(self.plan.classes).map(softmax).collect()
        });
        let scores = out.pop().expect("one read").into_iter().map(|o| self.plan.score_from_objective(o)).collect();
        Ok((scores, probabilities))
    }

    /// d (sign * objective) / d input for each image, and the objective.
    pub async fn input_gradient(
        &mut self,
        images: &[f32],
        direction: Direction,
    ) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        self.check_input(images)?;
        let mut table = self.plan.forward_with_sign(direction.sign());
        table.extend(self.plan.backward.iter().copied());
        let schedule: Vec<usize> = (0..table.len()).collect();
        let reads = [(self.plan.input_grad, self.plan.input_len()), (self.plan.objective, self.plan.batch)];
        let mut out = self.execute(&table, &schedule, &[(self.plan.input, images)], &reads).await?;
        let objective = out.pop().expect("two reads");
        Ok((out.pop().expect("two reads"), objective))
    }

    /// L-infinity PGD on the detector score, entirely on the device. `on_records(t, scores)`
    /// is called with the scores of every sample at each step t as they come back; returning
    /// false stops the attack early (the best images reached so far are kept and scored).
    pub async fn attack(
        &mut self,
        images: &[f32],
        options: &AttackOptions,
        mut on_records: impl FnMut(usize, &[f32]) -> bool,
    ) -> Result<AttackResult, EngineError> {
        self.check_input(images)?;
        options.check()?;
        let p = &self.plan;
        let (batch, n) = (p.batch, p.input_len());
        let sign = options.direction.sign();
        let eps = options.attack.eps;
        // The parameter table: forward, backward, step, record slots, starts, best-keeping.
        let mut table = p.forward_with_sign(sign);
        let forward: Vec<usize> = (0..table.len()).collect();
        let backward: Vec<usize> = (table.len()..table.len() + p.backward.len()).collect();
        table.extend(p.backward.iter().copied());
        let step = table.len();
        table.push(Op::pgd_step(p.clean, p.input, p.input_grad, n, eps, options.attack.step_size()));
        let record0 = table.len();
        table.extend((0..HISTORY_STEPS).map(|k| Op::record(p.objective, p.history + k * batch, batch)));
        let start0 = table.len();
        for r in 0..options.attack.restarts {
            let start_eps = if options.attack.random_start { eps } else { 0.0 };
            table.push(Op::pgd_init(p.clean, p.input, n, options.attack.seed.wrapping_add(r as u32), start_eps));
        }
        let (keep_first, keep_better) = (table.len(), table.len() + 1);
        let keep = |first| {
            Op::keep_best(p.input, p.objective, p.best_input, p.best_objective, batch, IMAGE_VALUES, first, sign)
        };
        table.extend([keep(true), keep(false)]);
        let history_at = p.history;

        let mut history = Vec::with_capacity(options.attack.restarts * (options.attack.steps + 1));
        let mut writes: Vec<(usize, &[f32])> = vec![(self.plan.clean, images)];
        let mut stopped = false;
        for r in 0..options.attack.restarts {
            let mut schedule = vec![start0 + r];
            let mut pending = 0;
            // Step t: forward at x_t (recorded), backward, update; then the final forward at x_T.
            let mut t = 0;
            loop {
                let last = t == options.attack.steps || stopped;
                schedule.extend(&forward);
                schedule.push(record0 + pending);
                pending += 1;
                // Every point visited competes for the result, not only the last one.
                schedule.push(if r == 0 && t == 0 { keep_first } else { keep_better });
                if !last {
                    schedule.extend(&backward);
                    schedule.push(step);
                }
                if pending == options.report_every || last {
                    let reads = [(history_at, pending * batch)];
                    let records = self.execute(&table, &schedule, &writes, &reads).await?.remove(0);
                    writes.clear();
                    schedule.clear();
                    for chunk in records.chunks(batch) {
                        let scores: Vec<f32> = chunk.iter().map(|&o| self.plan.score_from_objective(o)).collect();
                        stopped |= !on_records(history.len(), &scores);
                        history.push(scores);
                    }
                    pending = 0;
                    yield_now().await;
                }
                if last {
                    break;
                }
                t += 1;
            }
            if stopped {
                break;
            }
        }
        let reads = [(self.plan.best_input, n), (self.plan.best_objective, batch)];
        let mut out = self.execute(&table, &[], &[], &reads).await?;
        let best_objective = out.pop().expect("two reads");
        let adversarial = out.pop().expect("two reads");
        let scores = best_objective.into_iter().map(|o| self.plan.score_from_objective(o)).collect();
        Ok(AttackResult { adversarial, scores, history })
    }
}

/// Let the host's event loop run between attack chunks (in a browser worker, so that a stop
/// request can arrive while the CPU engine is busy); nothing to do natively.
#[cfg(target_arch = "wasm32")]
async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into()).expect("setTimeout exists");
        let set_timeout: js_sys::Function = set_timeout.into();
        let _ = set_timeout.call2(&wasm_bindgen::JsValue::UNDEFINED, &resolve, &0.into());
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

#[cfg(not(target_arch = "wasm32"))]
async fn yield_now() {}

/// Probabilities from logits, shifted by their maximum so no exponential overflows.
fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_attack_request_parses_with_defaults_for_what_it_leaves_out() {
        // What web/worker.js sends.
        let page: AttackOptions =
            serde_json::from_str(r#"{"direction": "in", "eps": 0.0313725, "steps": 20, "seed": 9}"#).unwrap();
        assert_eq!(page, AttackOptions::new(AttackSpec::new(0.0313725, 20).with_seed(9), Direction::In));
        // Everything spelled out reads back as written, and a request round-trips.
        let full = AttackOptions {
            report_every: 2,
            ..AttackOptions::new(
                AttackSpec { random_start: false, ..AttackSpec::new(0.1, 3).with_restarts(2).with_step_size(0.05) },
                Direction::Out,
            )
        };
        assert_eq!(serde_json::from_str::<AttackOptions>(&serde_json::to_string(&full).unwrap()).unwrap(), full);
        // What cannot be defaulted is required.
        for missing in [r#"{"eps": 0.1, "steps": 3}"#, r#"{"direction": "out", "steps": 3}"#] {
            assert!(serde_json::from_str::<AttackOptions>(missing).is_err(), "{missing}");
        }
    }
}
