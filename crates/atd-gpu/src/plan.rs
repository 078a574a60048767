//! From a validated weights file to a fixed list of kernel launches: the forward pass to the
//! detector's objective, the backward pass to the input, and the attack's own kernels. The same
//! list runs on the GPU (one dispatch per op) and on the CPU reference (`cpu.rs`), so the two
//! agree by construction and tests compare them kernel by kernel.
//!
//! Memory: all weights (BatchNorm folded to a per-channel scale and shift at load) in one
//! buffer; every activation, gradient and attack buffer in one arena. Offsets are in f32s.

use atd_core::card::{Activation, ModelCard, Padding, Shortcut};
use atd_core::weights::Weights;
use atd_core::{IMAGE_SIZE, IMAGE_VALUES};

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

/// One kernel launch: 16 u32 parameters (as the shaders' `Params`) and a thread count.
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

fn f(v: f32) -> u32 {
    v.to_bits()
}

/// Offsets are u32 in the shaders: guard against models or batches that overflow them.
fn u(v: usize) -> u32 {
    u32::try_from(v).expect("offset fits in u32 (checked when the plan is built)")
}

impl Op {
    fn new(kernel: Kernel, threads: usize, params: &[usize]) -> Self {
        let mut p = [0u32; 16];
        for (slot, &v) in p.iter_mut().zip(params) {
            *slot = u(v);
        }
        Self { kernel, params: p, threads: u(threads) }
    }

    fn with(mut self, index: usize, bits: u32) -> Self {
        self.params[index] = bits;
        self
    }

    /// y = act(x * scale + shift) per channel over `batch * channels * hw` values.
    #[allow(clippy::too_many_arguments)]
    pub fn affine_act(
        x: usize,
        y: usize,
        scale: usize,
        shift: usize,
        channels: usize,
        hw: usize,
        n: usize,
        act: u32,
        slope: f32,
    ) -> Self {
        Op::new(Kernel::AffineAct, n, &[x, y, scale, shift, channels, hw, n, act as usize]).with(8, f(slope))
    }

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
        Op::new(Kernel::AffineActBackward, n, &[x, dy, dx, scale, channels, hw, n, act as usize])
            .with(8, f(slope))
            .with(9, u(shift))
            .with(10, accumulate as u32)
    }

    pub fn add(a: usize, b: usize, y: usize, n: usize) -> Self {
        Op::new(Kernel::Add, n, &[a, b, y, n])
    }

    pub fn copy(x: usize, y: usize, n: usize) -> Self {
        Op::new(Kernel::Copy, n, &[x, y, n])
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
        Op::new(
            kernel,
            threads,
            &[
                from,
                w,
                to,
                batch,
                g.cin,
                g.cout,
                g.hin,
                g.win,
                g.hout,
                g.wout,
                g.k,
                g.stride,
                g.pad_top,
                g.pad_left,
                accumulate as usize,
            ],
        )
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
        Op::new(
            Kernel::LinearForward,
            batch * nout,
            &[x, w, y, batch, nin, nout, bias.unwrap_or(0), bias.is_some() as usize],
        )
    }

    pub fn linear_backward(dy: usize, w: usize, dx: usize, batch: usize, nin: usize, nout: usize) -> Self {
        Op::new(Kernel::LinearBackwardInput, batch * nin, &[dy, w, dx, batch, nin, nout])
    }

    pub fn mean_pool(x: usize, y: usize, rows: usize, hw: usize) -> Self {
        Op::new(Kernel::MeanPool, rows, &[x, y, rows, hw])
    }

    pub fn mean_pool_backward(dy: usize, dx: usize, rows: usize, hw: usize) -> Self {
        Op::new(Kernel::MeanPoolBackward, rows * hw, &[dy, dx, rows * hw, hw])
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
        Op::new(Kernel::Objective, batch, &[logits, objective, grad, batch, classes, msp as usize]).with(6, f(sign))
    }

    pub fn pgd_init(x0: usize, x: usize, n: usize, seed: u32, eps: f32) -> Self {
        Op::new(Kernel::PgdInit, n, &[x0, x, n]).with(3, seed).with(4, f(eps))
    }

    pub fn pgd_step(x0: usize, x: usize, g: usize, n: usize, eps: f32, alpha: f32) -> Self {
        Op::new(Kernel::PgdStep, n, &[x0, x, g, n]).with(4, f(eps)).with(5, f(alpha))
    }

    pub fn record(objective: usize, hist: usize, batch: usize) -> Self {
        Op::new(Kernel::Record, batch, &[objective, hist, batch])
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
        Op::new(Kernel::KeepBest, batch, &[x, objective, best_x, best_objective, batch, per, first as usize])
            .with(7, f(sign))
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

/// Which detector the plan computes (and attacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// The ATD discriminator's logit; score = sigmoid.
    Atd,
    /// The classifier's log max-softmax probability; score = exp.
    Msp,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the weights file has no {0} (needed for this detector)")]
    MissingHead(&'static str),
    #[error("batch size must be at least 1")]
    EmptyBatch,
    #[error("model and batch need {0} floats of GPU memory, more than the engine addresses")]
    TooLarge(usize),
}

/// Bump allocator for the arena.
#[derive(Default)]
struct Arena {
    len: usize,
}

impl Arena {
    fn alloc(&mut self, n: usize) -> usize {
        let at = self.len;
        self.len += n.max(1);
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
    pub head: Head,
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
    pub fn new(weights: &Weights, head: Head, batch: usize, conv: ConvStrategy) -> Result<Self, PlanError> {
        if batch == 0 {
            return Err(PlanError::EmptyBatch);
        }
        let card = weights.card.clone();
        match head {
            Head::Atd if card.discriminator.is_none() => return Err(PlanError::MissingHead("ATD discriminator")),
            Head::Msp if card.classifier.is_none() => return Err(PlanError::MissingHead("classifier head")),
            _ => {}
        }
        let spec = &card.extractor;
        let act = activation_code(spec.activation);
        let mut pack = Packer::default();
        let mut arena = Arena::default();
        let (mut fwd, mut bwd_rev) = (Vec::new(), Vec::new());
        let n_in = batch * IMAGE_VALUES;
        let input = arena.alloc(n_in);
        let input_grad = arena.alloc(n_in);
        let clean = arena.alloc(n_in);
        let best_input = arena.alloc(n_in);

        // Normalisation inside the model: (x - mean) / std as an affine op.
        let inv_std: Vec<f32> = spec.input_std.iter().map(|s| 1.0 / s).collect();
        let norm_scale = pack.push(&inv_std);
        let norm_shift = pack.push(&spec.input_mean.iter().zip(&inv_std).map(|(m, s)| -m * s).collect::<Vec<_>>());
        let hw0 = IMAGE_SIZE * IMAGE_SIZE;
        let normed = arena.alloc(n_in);
        let d_normed = arena.alloc(n_in);
        fwd.push(Op::affine_act(input, normed, norm_scale, norm_shift, 3, hw0, n_in, ACT_NONE, 0.0));
        bwd_rev.push(Op::affine_act_backward(
            input, d_normed, input_grad, norm_scale, norm_shift, 3, hw0, n_in, ACT_NONE, 0.0, false,
        ));

        // Stem.
        let g = ConvGeometry::new(3, spec.widths[0], IMAGE_SIZE, 3, 1, Padding::Symmetric);
        let stem_w = pack.tensor(weights, "extractor.stem.weight");
        let mut size = g.hout;
        let mut h = arena.alloc(batch * g.cout * size * size);
        let mut d_h = arena.alloc(batch * g.cout * size * size);
        fwd.push(Op::conv_forward(normed, stem_w, h, &g, batch, conv));
        bwd_rev.push(Op::conv(Kernel::ConvBackwardInput, d_h, stem_w, d_normed, &g, batch, false));

        for (i, (cin, cout, stride)) in spec.block_layout().into_iter().enumerate() {
            let p = format!("extractor.blocks.{i}");
            let n_inp = batch * cin * size * size;
            let (bn0_s, bn0_t) = pack.batch_norm(weights, &format!("{p}.bn0"), spec.bn_epsilon);
            let a = arena.alloc(n_inp);
            let d_a = arena.alloc(n_inp);
            fwd.push(Op::affine_act(h, a, bn0_s, bn0_t, cin, size * size, n_inp, act, 0.0));

            let g1 = ConvGeometry::new(cin, cout, size, 3, stride, spec.padding);
            let out_size = g1.hout;
            let n_out = batch * cout * out_size * out_size;
            let w1 = pack.tensor(weights, &format!("{p}.conv1.weight"));
            let c1 = arena.alloc(n_out);
            let d_c1 = arena.alloc(n_out);
            fwd.push(Op::conv_forward(a, w1, c1, &g1, batch, conv));
            let (bn1_s, bn1_t) = pack.batch_norm(weights, &format!("{p}.bn1"), spec.bn_epsilon);
            let b = arena.alloc(n_out);
            let d_b = arena.alloc(n_out);
            fwd.push(Op::affine_act(c1, b, bn1_s, bn1_t, cout, out_size * out_size, n_out, act, 0.0));
            let g2 = ConvGeometry::new(cout, cout, out_size, 3, 1, spec.padding);
            let w2 = pack.tensor(weights, &format!("{p}.conv2.weight"));
            let c2 = arena.alloc(n_out);
            fwd.push(Op::conv_forward(b, w2, c2, &g2, batch, conv));
            let next = arena.alloc(n_out);
            let d_next = arena.alloc(n_out);

            // Backward of this block, in reverse order (pushed reversed below).
            let mut back = Vec::new();
            back.push(Op::conv(Kernel::ConvBackwardInput, d_next, w2, d_b, &g2, batch, false));
            back.push(Op::affine_act_backward(
                c1,
                d_b,
                d_c1,
                bn1_s,
                bn1_t,
                cout,
                out_size * out_size,
                n_out,
                act,
                0.0,
                false,
            ));
            back.push(Op::conv(Kernel::ConvBackwardInput, d_c1, w1, d_a, &g1, batch, false));
            let has_shortcut = stride != 1 || cin != cout;
            match (has_shortcut, spec.shortcut) {
                (false, _) => {
                    fwd.push(Op::add(c2, h, next, n_out));
                    back.push(Op::copy(d_next, d_h, n_out));
                    back.push(Op::affine_act_backward(
                        h,
                        d_a,
                        d_h,
                        bn0_s,
                        bn0_t,
                        cin,
                        size * size,
                        n_inp,
                        act,
                        0.0,
                        true,
                    ));
                }
                (true, Shortcut::Conv1x1) => {
                    let gs = ConvGeometry::new(cin, cout, size, 1, stride, spec.padding);
                    let ws = pack.tensor(weights, &format!("{p}.shortcut.weight"));
                    let s = arena.alloc(n_out);
                    fwd.push(Op::conv_forward(a, ws, s, &gs, batch, conv));
                    fwd.push(Op::add(c2, s, next, n_out));
                    back.push(Op::conv(Kernel::ConvBackwardInput, d_next, ws, d_a, &gs, batch, true));
                    back.push(Op::affine_act_backward(
                        h,
                        d_a,
                        d_h,
                        bn0_s,
                        bn0_t,
                        cin,
                        size * size,
                        n_inp,
                        act,
                        0.0,
                        false,
                    ));
                }
                (true, Shortcut::Conv3x3) => {
                    let gs = ConvGeometry::new(cin, cout, size, 3, stride, spec.padding);
                    let ws = pack.tensor(weights, &format!("{p}.shortcut.weight"));
                    let s = arena.alloc(n_out);
                    fwd.push(Op::conv_forward(h, ws, s, &gs, batch, conv));
                    fwd.push(Op::add(c2, s, next, n_out));
                    back.push(Op::conv(Kernel::ConvBackwardInput, d_next, ws, d_h, &gs, batch, false));
                    back.push(Op::affine_act_backward(
                        h,
                        d_a,
                        d_h,
                        bn0_s,
                        bn0_t,
                        cin,
                        size * size,
                        n_inp,
                        act,
                        0.0,
                        true,
                    ));
                }
            }
            bwd_rev.extend(back.into_iter().rev());
            h = next;
            d_h = d_next;
            size = out_size;
        }

        // Final BN + activation, global average pool: the features.
        let f = spec.feature_dim();
        let n_last = batch * f * size * size;
        let (fs, ft) = pack.batch_norm(weights, "extractor.final_bn", spec.bn_epsilon);
        let last = arena.alloc(n_last);
        let d_last = arena.alloc(n_last);
        fwd.push(Op::affine_act(h, last, fs, ft, f, size * size, n_last, act, 0.0));
        bwd_rev.push(Op::affine_act_backward(h, d_last, d_h, fs, ft, f, size * size, n_last, act, 0.0, false));
        let features = arena.alloc(batch * f);
        let d_features = arena.alloc(batch * f);
        fwd.push(Op::mean_pool(last, features, batch * f, size * size));
        bwd_rev.push(Op::mean_pool_backward(d_features, d_last, batch * f, size * size));

        let objective = arena.alloc(batch);
        let best_objective = arena.alloc(batch);
        let history = arena.alloc(batch * HISTORY_STEPS);
        // The classifier head (MSP's objective; the predicted class for both heads).
        let classifier = card.classifier.map(|c| {
            let cw = pack.tensor(weights, "classifier.weight");
            let cb = pack.tensor(weights, "classifier.bias");
            let logits = arena.alloc(batch * c);
            let d_logits = arena.alloc(batch * c);
            fwd.push(Op::linear(features, cw, logits, batch, f, c, Some(cb)));
            (c, cw, logits, d_logits)
        });
        let objective_op = match head {
            Head::Atd => {
                let d = card.discriminator.as_ref().expect("checked above");
                let ones = pack.push(&vec![1.0; *d.widths.iter().max().unwrap_or(&1)]);
                let zeros = pack.push(&vec![0.0; *d.widths.iter().max().unwrap_or(&1)]);
                let (mut x, mut dx, mut nin) = (features, d_features, f);
                for (i, &w) in d.widths.iter().enumerate() {
                    let lw = pack.tensor(weights, &format!("discriminator.hidden.{i}.linear.weight"));
                    let z = arena.alloc(batch * w);
                    let dz = arena.alloc(batch * w);
                    let y = arena.alloc(batch * w);
                    let dy = arena.alloc(batch * w);
                    fwd.push(Op::linear(x, lw, z, batch, nin, w, None));
                    let (s, t) = if i > 0 {
                        pack.batch_norm(weights, &format!("discriminator.hidden.{i}.bn"), 1e-5)
                    } else {
                        (ones, zeros)
                    };
                    fwd.push(Op::affine_act(z, y, s, t, w, 1, batch * w, ACT_LEAKY, d.slope));
                    bwd_rev.push(Op::linear_backward(dz, lw, dx, batch, nin, w));
                    bwd_rev.push(Op::affine_act_backward(z, dy, dz, s, t, w, 1, batch * w, ACT_LEAKY, d.slope, false));
                    (x, dx, nin) = (y, dy, w);
                }
                let ow = pack.tensor(weights, "discriminator.output.weight");
                let logit = arena.alloc(batch);
                let d_logit = arena.alloc(batch);
                fwd.push(Op::linear(x, ow, logit, batch, nin, 1, None));
                bwd_rev.push(Op::linear_backward(d_logit, ow, dx, batch, nin, 1));
                Op::objective(logit, objective, d_logit, batch, 1, false, 1.0)
            }
            Head::Msp => {
                let (c, cw, logits, d_logits) = classifier.expect("checked above");
                bwd_rev.push(Op::linear_backward(d_logits, cw, d_features, batch, f, c));
                Op::objective(logits, objective, d_logits, batch, c, true, 1.0)
            }
        };
        fwd.push(objective_op);
        bwd_rev.reverse();
        if arena.len > u32::MAX as usize || pack.data.len() > u32::MAX as usize {
            return Err(PlanError::TooLarge(arena.len.max(pack.data.len())));
        }
        Ok(Self {
            card,
            head,
            batch,
            weights: pack.data,
            arena_len: arena.len,
            input,
            clean,
            input_grad,
            objective,
            class_logits: classifier.map(|c| c.2),
            classes: classifier.map_or(0, |c| c.0),
            best_input,
            best_objective,
            history,
            history_steps: HISTORY_STEPS,
            forward: fwd,
            backward: bwd_rev,
        })
    }

    /// The forward pass with the objective's gradient seed scaled by `sign` (+1: raise the
    /// score, -1: lower it).
    pub fn forward_with_sign(&self, sign: f32) -> Vec<Op> {
        let mut ops = self.forward.clone();
        let last = ops.last_mut().expect("the forward pass ends with the objective");
        last.params[6] = sign.to_bits();
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
