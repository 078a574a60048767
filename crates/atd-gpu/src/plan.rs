//! From a validated weights file to a fixed list of kernel launches: the forward pass to the
//! detector's objective, the backward pass to the input, and the attack's own kernels. The same
//! list runs on the GPU (one dispatch per op) and on the CPU reference (`kernels::run_cpu`), so the two
//! agree by construction and tests compare them kernel by kernel.
//!
//! Memory: all weights (BatchNorm folded to a per-channel scale and shift at load) in one
//! buffer; every activation, gradient and attack buffer in one arena. Offsets are in f32s.
//!
//! The plan builder alone (the kernels and their constructors are in `kernels/`). It is one
//! file over 450 lines because it is one traversal: each step of the network pushes its forward
//! ops and, in the same place, its backward ones.

use atd_core::attack::Detector;
use atd_core::card::{Activation, ExtractorSpec, ModelCard, Padding, Shortcut};
use atd_core::weights::Weights;
use atd_core::{IMAGE_SIZE, IMAGE_VALUES};

use crate::kernels::{ACT_LEAKY, ACT_NONE, ACT_RELU, ACT_SWISH, AttackParams, ConvGeometry, ConvStrategy, Kernel, Op};

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
    #[error(
        "the engine runs pre-activation ResNets without {0}; Burn runs this file (atd score, atd eval, atd attack --engine burn)"
    )]
    UnsupportedExtractor(&'static str),
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
        if !card.extractor.denoise.is_empty() {
            return Err(PlanError::UnsupportedExtractor("OSAD's denoising blocks"));
        }
        match head {
            Head::Atd if card.discriminator.is_none() => return Err(PlanError::MissingHead("ATD discriminator")),
            Head::Msp if !card.has_msp() => return Err(PlanError::MissingHead("K-way classifier head")),
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
