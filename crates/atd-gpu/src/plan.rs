//! From a validated weights file to a fixed list of kernel launches: the forward pass to the
//! detector's objective, the backward pass to the input, and the attack's own kernels. The same
//! list runs on the GPU (one dispatch per op) and on the CPU reference (`cpu.rs`), so the two
//! agree by construction and tests compare them kernel by kernel.
//!
//! Memory: all weights (BatchNorm folded to a per-channel scale and shift at load) in one
//! buffer; every activation, gradient and attack buffer in one arena. Offsets are in f32s.

use atd_core::attack::Detector;
use atd_core::card::{Activation, ExtractorSpec, ModelCard, Padding, Shortcut};
use atd_core::weights::Weights;
use atd_core::{IMAGE_SIZE, IMAGE_VALUES};

use crate::params::{AttackParams, ConvParams, DenseParams, ElementwiseParams, KernelParams};

/// The WGSL entry points, one per kernel (see `shaders/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    AffineAct,
    AffineActBackward,
    Add,
    Copy,
    ConvForward,
    ConvForwardTiled,
    ConvBackwardInput,
    LinearForward,
    LinearBackwardInput,
    MeanPool,
    MeanPoolBackward,
    Objective,
    PgdInit,
    PgdStep,
    Record,
    KeepBest,
}

impl Kernel {
    pub const ALL: [Kernel; 16] = [
        Kernel::AffineAct,
        Kernel::AffineActBackward,
        Kernel::Add,
        Kernel::Copy,
        Kernel::ConvForward,
        Kernel::ConvForwardTiled,
        Kernel::ConvBackwardInput,
        Kernel::LinearForward,
        Kernel::LinearBackwardInput,
        Kernel::MeanPool,
        Kernel::MeanPoolBackward,
        Kernel::Objective,
        Kernel::PgdInit,
        Kernel::PgdStep,
        Kernel::Record,
        Kernel::KeepBest,
    ];

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::AffineAct => "affine_act",
            Kernel::AffineActBackward => "affine_act_backward",
            Kernel::Add => "add",
            Kernel::Copy => "copy",
            Kernel::ConvForward => "conv_forward",
            Kernel::ConvForwardTiled => "conv_forward_tiled",
            Kernel::ConvBackwardInput => "conv_backward_input",
            Kernel::LinearForward => "linear_forward",
            Kernel::LinearBackwardInput => "linear_backward_input",
            Kernel::MeanPool => "mean_pool",
            Kernel::MeanPoolBackward => "mean_pool_backward",
            Kernel::Objective => "objective",
            Kernel::PgdInit => "pgd_init",
            Kernel::PgdStep => "pgd_step",
            Kernel::Record => "record",
            Kernel::KeepBest => "keep_best",
        }
    }

    /// The shader file (op family) that holds this kernel.
    pub fn family(self) -> Family {
        match self {
            Kernel::AffineAct | Kernel::AffineActBackward | Kernel::Add | Kernel::Copy => Family::Elementwise,
            Kernel::ConvForward | Kernel::ConvForwardTiled | Kernel::ConvBackwardInput => Family::Conv,
            Kernel::LinearForward | Kernel::LinearBackwardInput | Kernel::MeanPool | Kernel::MeanPoolBackward => {
                Family::Dense
            }
            Kernel::Objective | Kernel::PgdInit | Kernel::PgdStep | Kernel::Record | Kernel::KeepBest => Family::Attack,
        }
    }
}

/// One WGSL file per op family; each is compiled with `shaders/common.wgsl` in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Conv,
    Dense,
    Attack,
}

pub const COMMON_WGSL: &str = include_str!("../../../shaders/common.wgsl");

impl Family {
    pub const ALL: [Family; 4] = [Family::Elementwise, Family::Conv, Family::Dense, Family::Attack];

    pub fn file_name(self) -> &'static str {
        match self {
            Family::Elementwise => "elementwise.wgsl",
            Family::Conv => "conv.wgsl",
            Family::Dense => "dense.wgsl",
            Family::Attack => "attack.wgsl",
        }
    }

    /// The name of the family's parameter struct (in `params.rs` and in its WGSL file).
    pub fn params_struct(self) -> &'static str {
        match self {
            Family::Elementwise => ElementwiseParams::WGSL_NAME,
            Family::Conv => ConvParams::WGSL_NAME,
            Family::Dense => DenseParams::WGSL_NAME,
            Family::Attack => AttackParams::WGSL_NAME,
        }
    }

    /// The complete shader source: the common header, then the family's kernels.
    pub fn source(self) -> String {
        let body = match self {
            Family::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Family::Conv => include_str!("../../../shaders/conv.wgsl"),
            Family::Dense => include_str!("../../../shaders/dense.wgsl"),
            Family::Attack => include_str!("../../../shaders/attack.wgsl"),
        };
        format!("{COMMON_WGSL}\n{body}")
    }
}

/// One kernel launch: its parameters (its family's struct in `params`, as the 64 bytes the
/// shader's uniform holds) and a thread count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Op {
    pub kernel: Kernel,
    pub params: [u32; 16],
    pub threads: u32,
}

/// Channels per thread in the convolution kernels (`BLOCK` in shaders/conv.wgsl).
pub const CONV_BLOCK: usize = 4;
/// The tiled forward convolution's output tile side and channels per workgroup (`TILE`,
/// `TILE_CHANNELS` in shaders/conv.wgsl); its workgroups are 256 invocations.
pub const CONV_TILE: usize = 8;
pub const CONV_TILE_CHANNELS: usize = 16;

/// Activation codes of `shaders/common.wgsl`.
pub const ACT_NONE: u32 = 0;
pub const ACT_RELU: u32 = 1;
pub const ACT_SWISH: u32 = 2;
pub const ACT_LEAKY: u32 = 3;

/// Offsets and thread counts are u32 in the shaders. A plan over the memory budget is refused
/// once it is complete (`PlanError::TooLarge`), so a value that does not fit only ever lands in
/// a plan that is then discarded: saturate rather than panic.
fn u(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Op {
    fn new<P: KernelParams>(kernel: Kernel, threads: usize, params: P) -> Self {
        assert_eq!(P::WGSL_NAME, kernel.family().params_struct(), "{kernel:?} takes its family's parameters");
        Self { kernel, params: bytemuck::cast(params), threads: u(threads) }
    }

    /// The parameters as the struct of the kernel's family.
    pub fn params<P: KernelParams>(&self) -> P {
        assert_eq!(P::WGSL_NAME, self.kernel.family().params_struct(), "{:?} has its family's parameters", self.kernel);
        bytemuck::cast(self.params)
    }

    /// out = act(x * scale + shift) per channel over `batch * channels * hw` values.
    #[allow(clippy::too_many_arguments)]
    pub fn affine_act(
        x: usize,
        out: usize,
        scale: usize,
        shift: usize,
        channels: usize,
        hw: usize,
        n: usize,
        act: u32,
        slope: f32,
    ) -> Self {
        let p = ElementwiseParams {
            x: u(x),
            out: u(out),
            scale: u(scale),
            shift: u(shift),
            channels: u(channels),
            hw: u(hw),
            n: u(n),
            act,
            slope,
            ..Default::default()
        };
        Op::new(Kernel::AffineAct, n, p)
    }

    /// dx (+)= dy * act'(x * scale + shift) * scale.
    #[allow(clippy::too_many_arguments)]
    pub fn affine_act_backward(
        x: usize,
        dy: usize,
        dx: usize,
        scale: usize,
        shift: usize,
        channels: usize,
        hw: usize,
        n: usize,
        act: u32,
        slope: f32,
        accumulate: bool,
    ) -> Self {
        let p = ElementwiseParams {
            x: u(x),
            y: u(dy),
            out: u(dx),
            scale: u(scale),
            shift: u(shift),
            channels: u(channels),
            hw: u(hw),
            n: u(n),
            act,
            slope,
            accumulate: accumulate as u32,
            ..Default::default()
        };
        Op::new(Kernel::AffineActBackward, n, p)
    }

    pub fn add(a: usize, b: usize, y: usize, n: usize) -> Self {
        Op::new(Kernel::Add, n, ElementwiseParams { x: u(a), y: u(b), out: u(y), n: u(n), ..Default::default() })
    }

    pub fn copy(x: usize, y: usize, n: usize) -> Self {
        Op::new(Kernel::Copy, n, ElementwiseParams { x: u(x), out: u(y), n: u(n), ..Default::default() })
    }

    pub fn conv(
        kernel: Kernel,
        from: usize,
        w: usize,
        to: usize,
        g: &ConvGeometry,
        batch: usize,
        accumulate: bool,
    ) -> Self {
        // Each thread computes CONV_BLOCK channels of one pixel (see shaders/conv.wgsl).
        let threads = match kernel {
            Kernel::ConvForward => batch * g.cout.div_ceil(CONV_BLOCK) * g.hout * g.wout,
            Kernel::ConvForwardTiled => {
                assert!(
                    g.k <= 3 && g.stride <= 2,
                    "the tiled convolution stages patches for k <= 3 and stride <= 2 only"
                );
                let tiles = g.hout.div_ceil(CONV_TILE) * g.wout.div_ceil(CONV_TILE);
                batch * g.cout.div_ceil(CONV_TILE_CHANNELS) * tiles * 256
            }
            _ => batch * g.cin.div_ceil(CONV_BLOCK) * g.hin * g.win,
        };
        let p = ConvParams {
            input: u(from),
            weights: u(w),
            output: u(to),
            batch: u(batch),
            cin: u(g.cin),
            cout: u(g.cout),
            hin: u(g.hin),
            win: u(g.win),
            hout: u(g.hout),
            wout: u(g.wout),
            k: u(g.k),
            stride: u(g.stride),
            pad_top: u(g.pad_top),
            pad_left: u(g.pad_left),
            accumulate: accumulate as u32,
            ..Default::default()
        };
        Op::new(kernel, threads, p)
    }

    /// A forward convolution of the model with the chosen kernel (the tiled one only where its
    /// staged patch fits: k <= 3 and stride <= 2, which holds for every model card).
    pub fn conv_forward(
        from: usize,
        w: usize,
        to: usize,
        g: &ConvGeometry,
        batch: usize,
        strategy: ConvStrategy,
    ) -> Self {
        let tiled = strategy == ConvStrategy::Tiled && g.k <= 3 && g.stride <= 2;
        Op::conv(if tiled { Kernel::ConvForwardTiled } else { Kernel::ConvForward }, from, w, to, g, batch, false)
    }

    pub fn linear(x: usize, w: usize, y: usize, batch: usize, nin: usize, nout: usize, bias: Option<usize>) -> Self {
        let p = DenseParams {
            input: u(x),
            weights: u(w),
            output: u(y),
            rows: u(batch),
            nin: u(nin),
            nout: u(nout),
            bias: u(bias.unwrap_or(0)),
            has_bias: bias.is_some() as u32,
            ..Default::default()
        };
        Op::new(Kernel::LinearForward, batch * nout, p)
    }

    pub fn linear_backward(dy: usize, w: usize, dx: usize, batch: usize, nin: usize, nout: usize) -> Self {
        let p = DenseParams {
            input: u(dy),
            weights: u(w),
            output: u(dx),
            rows: u(batch),
            nin: u(nin),
            nout: u(nout),
            ..Default::default()
        };
        Op::new(Kernel::LinearBackwardInput, batch * nin, p)
    }

    pub fn mean_pool(x: usize, y: usize, rows: usize, hw: usize) -> Self {
        Op::new(
            Kernel::MeanPool,
            rows,
            DenseParams { input: u(x), output: u(y), rows: u(rows), hw: u(hw), ..Default::default() },
        )
    }

    pub fn mean_pool_backward(dy: usize, dx: usize, rows: usize, hw: usize) -> Self {
        let p = DenseParams { input: u(dy), output: u(dx), rows: u(rows), hw: u(hw), ..Default::default() };
        Op::new(Kernel::MeanPoolBackward, rows * hw, p)
    }

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

/// How the forward convolutions run (shaders/conv.wgsl): `Direct`, four channels of one pixel
/// per thread reading the arena; `Tiled`, input patches and weights staged in workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvStrategy {
    Direct,
    Tiled,
}

impl ConvStrategy {
    /// The tiled forward measured ~2x slower than the direct one on lavapipe (the engine bench),
    /// most likely because software adapters run a workgroup on one CPU thread, where workgroup
    /// memory is ordinary memory and every barrier costs. GPUs, where workgroup memory is
    /// on-chip, get the tiled kernel.
    pub fn for_adapter(software: bool) -> Self {
        if software { ConvStrategy::Direct } else { ConvStrategy::Tiled }
    }
}

/// Shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub cin: usize,
    pub cout: usize,
    pub hin: usize,
    pub win: usize,
    pub hout: usize,
    pub wout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl ConvGeometry {
    /// A k x k convolution on a square `size` input with the model's padding rule: 3x3 pads
    /// 1 everywhere except TF-SAME with stride 2 (bottom/right only); 1x1 pads nothing.
    pub fn new(cin: usize, cout: usize, size: usize, k: usize, stride: usize, padding: Padding) -> Self {
        let (pad_top, pad_total) = match (k, stride, padding) {
            (1, _, _) => (0, 0),
            (_, 1, _) | (_, _, Padding::Symmetric) => (1, 2),
            (_, _, Padding::Same) => (0, 1),
        };
        let out = (size + pad_total - k) / stride + 1;
        Self { cin, cout, hin: size, win: size, hout: out, wout: out, k, stride, pad_top, pad_left: pad_top }
    }
}

/// The detectors the engine computes (and attacks), as the output its plan ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// The ATD discriminator's logit; score = sigmoid.
    Atd,
    /// The classifier's log max-softmax probability; score = exp.
    Msp,
}

impl Head {
    fn of(detector: Detector) -> Result<Head, PlanError> {
        match detector {
            Detector::Atd => Ok(Head::Atd),
            Detector::Msp => Ok(Head::Msp),
            other => Err(PlanError::UnsupportedDetector(other.name())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the weights file has no {0} (needed for this detector)")]
    MissingHead(&'static str),
    #[error("the engine computes the atd and msp detectors, not {0}")]
    UnsupportedDetector(&'static str),
    #[error("batch size must be at least 1")]
    EmptyBatch,
    #[error(
        "the model and a batch of {batch} need {} MiB of engine memory; the limit is {} MiB",
        bytes >> 20, MAX_ENGINE_BYTES >> 20
    )]
    TooLarge { batch: usize, bytes: usize },
}

/// Memory budget of one engine (weights and arena, f32 each), checked before anything is
/// allocated: the page's models at batch 1 need a few MiB, the paper's PreActResNet-18 about
/// 60 MiB at batch 2; an absurd batch size or card is refused with this limit in the error.
pub const MAX_ENGINE_BYTES: usize = 512 << 20;

/// Bump allocator for the arena (it counts; the engine allocates once the plan is accepted).
#[derive(Default)]
struct Arena {
    len: usize,
}

impl Arena {
    fn alloc(&mut self, n: usize) -> usize {
        let at = self.len;
        self.len = self.len.saturating_add(n.max(1));
        at
    }
}

/// Weights packed into one buffer.
#[derive(Default)]
struct Packer {
    data: Vec<f32>,
}

impl Packer {
    fn push(&mut self, values: &[f32]) -> usize {
        let at = self.data.len();
        self.data.extend_from_slice(values);
        at
    }

    fn tensor(&mut self, w: &Weights, name: &str) -> usize {
        self.push(&w.tensors[name].data)
    }

    /// A BatchNorm folded to (scale, shift): y = x * scale + shift in eval mode.
    fn batch_norm(&mut self, w: &Weights, prefix: &str, eps: f64) -> (usize, usize) {
        let get = |p: &str| &w.tensors[&format!("{prefix}.{p}")].data;
        let (gamma, beta, mean, var) = (get("gamma"), get("beta"), get("running_mean"), get("running_var"));
        let scale: Vec<f32> =
            gamma.iter().zip(var).map(|(&g, &v)| (g as f64 / (v as f64 + eps).sqrt()) as f32).collect();
        let shift: Vec<f32> =
            beta.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| (b as f64 - m as f64 * s as f64) as f32).collect();
        (self.push(&scale), self.push(&shift))
    }
}

/// Everything needed to run the detector on a fixed batch size.
#[derive(Clone, Debug)]
pub struct Plan {
    pub card: ModelCard,
    pub detector: Detector,
    head: Head,
    pub batch: usize,
    pub weights: Vec<f32>,
    pub arena_len: usize,
    /// Images being scored or attacked, `[batch, 3, 32, 32]`.
    pub input: usize,
    /// Clean images of the attack.
    pub clean: usize,
    /// d objective / d input.
    pub input_grad: usize,
    /// The objective per sample (the unbounded score: D's logit, or log MSP).
    pub objective: usize,
    /// Classifier logits `[batch, classes]` when the file has a classifier head (computed in the
    /// forward pass for both heads: the predicted class).
    pub class_logits: Option<usize>,
    pub classes: usize,
    /// The attack's best images and objectives over restarts.
    pub best_input: usize,
    pub best_objective: usize,
    /// Per-step objective records: `history_steps` slots of `batch` values.
    pub history: usize,
    pub history_steps: usize,
    /// Forward pass from `input` to `objective`, ending with the objective op (sign +1).
    pub forward: Vec<Op>,
    /// Backward pass from the objective's seed to `input_grad`.
    pub backward: Vec<Op>,
}

/// Per-step records kept on the device between readbacks.
pub const HISTORY_STEPS: usize = 32;

fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Relu => ACT_RELU,
        Activation::Swish => ACT_SWISH,
    }
}

impl Plan {
    pub fn new(weights: &Weights, detector: Detector, batch: usize, conv: ConvStrategy) -> Result<Self, PlanError> {
        let head = Head::of(detector)?;
        if batch == 0 {
            return Err(PlanError::EmptyBatch);
        }
        // The four input-sized buffers alone (input, its gradient, the clean and the best
        // images) bound the batch, before any size below is computed from it.
        let inputs = batch.saturating_mul(4 * IMAGE_VALUES * 4);
        if inputs > MAX_ENGINE_BYTES {
            return Err(PlanError::TooLarge { batch, bytes: inputs });
        }
        let card = weights.card.clone();
        match head {
            Head::Atd if card.discriminator.is_none() => return Err(PlanError::MissingHead("ATD discriminator")),
            Head::Msp if card.classifier.is_none() => return Err(PlanError::MissingHead("classifier head")),
            _ => {}
        }
        let mut b = Builder::new(weights, batch, conv);
        let n_in = batch * IMAGE_VALUES;
        let input = b.arena.alloc(n_in);
        let input_grad = b.arena.alloc(n_in);
        let clean = b.arena.alloc(n_in);
        let best_input = b.arena.alloc(n_in);
        let mut x = b.normalise(Buffer { value: input, grad: input_grad });
        let mut size;
        (x, size) = b.stem(x);
        for (i, (cin, cout, stride)) in card.extractor.block_layout().into_iter().enumerate() {
            (x, size) = b.block(i, x, size, cin, cout, stride);
        }
        let features = b.features(x, size);
        let objective = b.arena.alloc(batch);
        let best_objective = b.arena.alloc(batch);
        let history = b.arena.alloc(batch * HISTORY_STEPS);
        let classifier = b.classifier(features);
        let objective_op = match head {
            Head::Atd => b.discriminator_objective(features, objective),
            Head::Msp => b.msp_objective(features, classifier.expect("checked above"), objective),
        };
        b.forward.push(objective_op);
        b.backward_reversed.reverse();
        let bytes = b.arena.len.saturating_add(b.pack.data.len()).saturating_mul(4);
        if bytes > MAX_ENGINE_BYTES {
            return Err(PlanError::TooLarge { batch, bytes });
        }
        Ok(Self {
            card,
            detector,
            head,
            batch,
            weights: b.pack.data,
            arena_len: b.arena.len,
            input,
            clean,
            input_grad,
            objective,
            class_logits: classifier.map(|c| c.logits.value),
            classes: classifier.map_or(0, |c| c.classes),
            best_input,
            best_objective,
            history,
            history_steps: HISTORY_STEPS,
            forward: b.forward,
            backward: b.backward_reversed,
        })
    }

    /// The forward pass with the objective's gradient seed scaled by `sign` (+1: raise the
    /// score, -1: lower it).
    pub fn forward_with_sign(&self, sign: f32) -> Vec<Op> {
        let mut ops = self.forward.clone();
        let last = ops.last_mut().expect("the forward pass ends with the objective");
        *last = Op::new(last.kernel, last.threads as usize, AttackParams { sign, ..last.params() });
        ops
    }

    /// Number of input values of one batch.
    pub fn input_len(&self) -> usize {
        self.batch * IMAGE_VALUES
    }

    /// The detector score from the objective: sigmoid(logit) for ATD, exp(log MSP) for MSP.
    pub fn score_from_objective(&self, objective: f32) -> f32 {
        match self.head {
            Head::Atd => 1.0 / (1.0 + (-objective).exp()),
            Head::Msp => objective.exp(),
        }
    }
}

/// An activation in the arena and its gradient.
#[derive(Clone, Copy)]
struct Buffer {
    value: usize,
    grad: usize,
}

/// The classifier head's logits and weights.
#[derive(Clone, Copy)]
struct Classifier {
    classes: usize,
    weight: usize,
    logits: Buffer,
}

/// `Plan::new`'s working state: the weights packed so far, the arena, and both passes (the
/// backward one in reverse: each step pushes its backward ops in the order they run backwards,
/// and the whole list is reversed at the end).
struct Builder<'a> {
    weights: &'a Weights,
    spec: &'a ExtractorSpec,
    batch: usize,
    conv: ConvStrategy,
    act: u32,
    pack: Packer,
    arena: Arena,
    forward: Vec<Op>,
    backward_reversed: Vec<Op>,
}

impl<'a> Builder<'a> {
    fn new(weights: &'a Weights, batch: usize, conv: ConvStrategy) -> Self {
        let spec = &weights.card.extractor;
        Self {
            weights,
            spec,
            batch,
            conv,
            act: activation_code(spec.activation),
            pack: Packer::default(),
            arena: Arena::default(),
            forward: Vec::new(),
            backward_reversed: Vec::new(),
        }
    }

    fn buffer(&mut self, n: usize) -> Buffer {
        let value = self.arena.alloc(n);
        Buffer { value, grad: self.arena.alloc(n) }
    }

    /// Normalisation inside the model: (x - mean) / std as an affine op.
    fn normalise(&mut self, input: Buffer) -> Buffer {
        let spec = self.spec;
        let inv_std: Vec<f32> = spec.input_std.iter().map(|s| 1.0 / s).collect();
        let scale = self.pack.push(&inv_std);
        let shift = self.pack.push(&spec.input_mean.iter().zip(&inv_std).map(|(m, s)| -m * s).collect::<Vec<_>>());
        let (hw, n) = (IMAGE_SIZE * IMAGE_SIZE, self.batch * IMAGE_VALUES);
        let normed = self.buffer(n);
        self.forward.push(Op::affine_act(input.value, normed.value, scale, shift, 3, hw, n, ACT_NONE, 0.0));
        self.backward_reversed.push(Op::affine_act_backward(
            input.value,
            normed.grad,
            input.grad,
            scale,
            shift,
            3,
            hw,
            n,
            ACT_NONE,
            0.0,
            false,
        ));
        normed
    }

    /// The stem convolution (3x3, stride 1) on the normalised input: its output and size.
    fn stem(&mut self, x: Buffer) -> (Buffer, usize) {
        let g = ConvGeometry::new(3, self.spec.widths[0], IMAGE_SIZE, 3, 1, Padding::Symmetric);
        let w = self.pack.tensor(self.weights, "extractor.stem.weight");
        let h = self.buffer(self.batch * g.cout * g.hout * g.wout);
        self.forward.push(Op::conv_forward(x.value, w, h.value, &g, self.batch, self.conv));
        self.backward_reversed.push(Op::conv(Kernel::ConvBackwardInput, h.grad, w, x.grad, &g, self.batch, false));
        (h, g.hout)
    }

    /// Pre-activation residual block `i` on `h` (`cin` channels of `size` x `size`): the output
    /// and its size.
    fn block(&mut self, i: usize, h: Buffer, size: usize, cin: usize, cout: usize, stride: usize) -> (Buffer, usize) {
        let (spec, batch, conv, act) = (self.spec, self.batch, self.conv, self.act);
        let p = format!("extractor.blocks.{i}");
        let n_inp = batch * cin * size * size;
        let (bn0_s, bn0_t) = self.pack.batch_norm(self.weights, &format!("{p}.bn0"), spec.bn_epsilon);
        let a = self.buffer(n_inp);
        self.forward.push(Op::affine_act(h.value, a.value, bn0_s, bn0_t, cin, size * size, n_inp, act, 0.0));

        let g1 = ConvGeometry::new(cin, cout, size, 3, stride, spec.padding);
        let out_size = g1.hout;
        let n_out = batch * cout * out_size * out_size;
        let w1 = self.pack.tensor(self.weights, &format!("{p}.conv1.weight"));
        let c1 = self.buffer(n_out);
        self.forward.push(Op::conv_forward(a.value, w1, c1.value, &g1, batch, conv));
        let (bn1_s, bn1_t) = self.pack.batch_norm(self.weights, &format!("{p}.bn1"), spec.bn_epsilon);
        let b = self.buffer(n_out);
        self.forward.push(Op::affine_act(c1.value, b.value, bn1_s, bn1_t, cout, out_size * out_size, n_out, act, 0.0));
        let g2 = ConvGeometry::new(cout, cout, out_size, 3, 1, spec.padding);
        let w2 = self.pack.tensor(self.weights, &format!("{p}.conv2.weight"));
        let c2 = self.arena.alloc(n_out);
        self.forward.push(Op::conv_forward(b.value, w2, c2, &g2, batch, conv));
        let next = self.buffer(n_out);

        // The block's backward, in the order it runs.
        let mut back = vec![
            Op::conv(Kernel::ConvBackwardInput, next.grad, w2, b.grad, &g2, batch, false),
            Op::affine_act_backward(
                c1.value,
                b.grad,
                c1.grad,
                bn1_s,
                bn1_t,
                cout,
                out_size * out_size,
                n_out,
                act,
                0.0,
                false,
            ),
            Op::conv(Kernel::ConvBackwardInput, c1.grad, w1, a.grad, &g1, batch, false),
        ];
        // Through the first BN + activation into d h, added to what the shortcut put there
        // (`accumulate`) or written afresh.
        let bn0_backward = |accumulate: bool| {
            Op::affine_act_backward(
                h.value,
                a.grad,
                h.grad,
                bn0_s,
                bn0_t,
                cin,
                size * size,
                n_inp,
                act,
                0.0,
                accumulate,
            )
        };
        let has_shortcut = stride != 1 || cin != cout;
        match (has_shortcut, spec.shortcut) {
            (false, _) => {
                self.forward.push(Op::add(c2, h.value, next.value, n_out));
                back.push(Op::copy(next.grad, h.grad, n_out));
                back.push(bn0_backward(true));
            }
            (true, Shortcut::Conv1x1) => {
                // He et al.'s shortcut: a 1x1 convolution of the pre-activated input.
                let gs = ConvGeometry::new(cin, cout, size, 1, stride, spec.padding);
                let ws = self.pack.tensor(self.weights, &format!("{p}.shortcut.weight"));
                let s = self.arena.alloc(n_out);
                self.forward.push(Op::conv_forward(a.value, ws, s, &gs, batch, conv));
                self.forward.push(Op::add(c2, s, next.value, n_out));
                back.push(Op::conv(Kernel::ConvBackwardInput, next.grad, ws, a.grad, &gs, batch, true));
                back.push(bn0_backward(false));
            }
            (true, Shortcut::Conv3x3) => {
                // DeepMind's shortcut: a 3x3 convolution of the raw input.
                let gs = ConvGeometry::new(cin, cout, size, 3, stride, spec.padding);
                let ws = self.pack.tensor(self.weights, &format!("{p}.shortcut.weight"));
                let s = self.arena.alloc(n_out);
                self.forward.push(Op::conv_forward(h.value, ws, s, &gs, batch, conv));
                self.forward.push(Op::add(c2, s, next.value, n_out));
                back.push(Op::conv(Kernel::ConvBackwardInput, next.grad, ws, h.grad, &gs, batch, false));
                back.push(bn0_backward(true));
            }
        }
        self.backward_reversed.extend(back.into_iter().rev());
        (next, out_size)
    }

    /// Final BN + activation and global average pooling: the features `[batch, f]`.
    fn features(&mut self, h: Buffer, size: usize) -> Buffer {
        let (batch, f, act) = (self.batch, self.spec.feature_dim(), self.act);
        let n_last = batch * f * size * size;
        let (fs, ft) = self.pack.batch_norm(self.weights, "extractor.final_bn", self.spec.bn_epsilon);
        let last = self.buffer(n_last);
        self.forward.push(Op::affine_act(h.value, last.value, fs, ft, f, size * size, n_last, act, 0.0));
        self.backward_reversed.push(Op::affine_act_backward(
            h.value,
            last.grad,
            h.grad,
            fs,
            ft,
            f,
            size * size,
            n_last,
            act,
            0.0,
            false,
        ));
        let features = self.buffer(batch * f);
        self.forward.push(Op::mean_pool(last.value, features.value, batch * f, size * size));
        self.backward_reversed.push(Op::mean_pool_backward(features.grad, last.grad, batch * f, size * size));
        features
    }

    /// The classifier head's logits, when the file has one (MSP's objective; the predicted
    /// class for both detectors).
    fn classifier(&mut self, features: Buffer) -> Option<Classifier> {
        let classes = self.weights.card.classifier?;
        let weight = self.pack.tensor(self.weights, "classifier.weight");
        let bias = self.pack.tensor(self.weights, "classifier.bias");
        let logits = self.buffer(self.batch * classes);
        let f = self.spec.feature_dim();
        self.forward.push(Op::linear(features.value, weight, logits.value, self.batch, f, classes, Some(bias)));
        Some(Classifier { classes, weight, logits })
    }

    /// ATD's discriminator (linear, BatchNorm after the first layer, LeakyReLU) to its logit:
    /// the objective op, and the backward from it to the features.
    fn discriminator_objective(&mut self, features: Buffer, objective: usize) -> Op {
        let batch = self.batch;
        let d = self.weights.card.discriminator.as_ref().expect("checked by Plan::new");
        let widest = *d.widths.iter().max().unwrap_or(&1);
        let ones = self.pack.push(&vec![1.0; widest]);
        let zeros = self.pack.push(&vec![0.0; widest]);
        let (mut x, mut nin) = (features, self.spec.feature_dim());
        for (i, &w) in d.widths.iter().enumerate() {
            let lw = self.pack.tensor(self.weights, &format!("discriminator.hidden.{i}.linear.weight"));
            let z = self.buffer(batch * w);
            let y = self.buffer(batch * w);
            self.forward.push(Op::linear(x.value, lw, z.value, batch, nin, w, None));
            let (s, t) = if i > 0 {
                self.pack.batch_norm(self.weights, &format!("discriminator.hidden.{i}.bn"), 1e-5)
            } else {
                (ones, zeros)
            };
            self.forward.push(Op::affine_act(z.value, y.value, s, t, w, 1, batch * w, ACT_LEAKY, d.slope));
            self.backward_reversed.push(Op::linear_backward(z.grad, lw, x.grad, batch, nin, w));
            self.backward_reversed.push(Op::affine_act_backward(
                z.value,
                y.grad,
                z.grad,
                s,
                t,
                w,
                1,
                batch * w,
                ACT_LEAKY,
                d.slope,
                false,
            ));
            (x, nin) = (y, w);
        }
        let ow = self.pack.tensor(self.weights, "discriminator.output.weight");
        let logit = self.buffer(batch);
        self.forward.push(Op::linear(x.value, ow, logit.value, batch, nin, 1, None));
        self.backward_reversed.push(Op::linear_backward(logit.grad, ow, x.grad, batch, nin, 1));
        Op::objective(logit.value, objective, logit.grad, batch, 1, false, 1.0)
    }

    /// MSP's objective (the log of the top softmax probability) and the backward from it to
    /// the features.
    fn msp_objective(&mut self, features: Buffer, head: Classifier, objective: usize) -> Op {
        let (batch, f) = (self.batch, self.spec.feature_dim());
        self.backward_reversed.push(Op::linear_backward(
            head.logits.grad,
            head.weight,
            features.grad,
            batch,
            f,
            head.classes,
        ));
        Op::objective(head.logits.value, objective, head.logits.grad, batch, head.classes, true, 1.0)
    }
}
