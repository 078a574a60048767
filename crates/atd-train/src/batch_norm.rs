//! BatchNorm and the activation after it, as one op on Burn's CPU backend (flex), forward and
//! backward: in training on the batch's statistics, in inference on the running ones.
//!
//! Why: Burn 0.22.1 computes `batch_norm_train` and its backward by its default decomposition
//! (about ten passes over the activation, with `swap_dims` copies), inference BatchNorm as four
//! elementwise ops, and flex runs those passes on the calling thread, so in extractor training one core waited through
//! them (docs/training.md, "Training speed"). Here the statistics are one pass per channel and
//! the output one pass per image, each spread over the threads (in inference the output pass
//! alone); the backward is two such passes,
//! and ReLU's mask is recomputed from the input instead of being another op. Every sum runs in a
//! fixed order within one channel, so results are the same bits whatever the threads (resumed
//! training must match). Swish runs as Burn's op after the fused normalisation; other backends
//! and dtypes keep Burn's path.
//!
//! One file past the usual length: the training and inference ops, their autodiff nodes and
//! their tests against Burn's BatchNorm are only correct together.

use atd_core::card::Activation;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::activation::{relu, silu};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use crate::flex::{FlexTensor, flex_tensor, is_flex, shape, zeros};

pub fn activate<const D: usize>(x: Tensor<D>, activation: Activation) -> Tensor<D> {
    match activation {
        Activation::Relu => relu(x),
        Activation::Swish => silu(x),
    }
}

/// `activate(bn.forward(x))`, through this module's fused ops on flex: in training with the
/// batch's statistics (updating the running ones as Burn's `BatchNorm` does), otherwise with the
/// running statistics. Other backends and dtypes take Burn's path.
pub fn batch_norm_activate(bn: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    let device = x.device();
    if !(is_flex(&device) && x.dtype() == DType::F32) {
        return activate(bn.forward(x), activation);
    }
    let fuse_relu = activation == Activation::Relu;
    let out = if device.is_autodiff() && bn.training.is_enabled() {
        training(bn, x, fuse_relu)
    } else {
        inference(bn, x, fuse_relu)
    };
    if fuse_relu { out } else { activate(out, activation) }
}

fn training(bn: &BatchNorm, x: Tensor<4>, fuse_relu: bool) -> Tensor<4> {
    let device = x.device();
    let (out, mean, variance) = <burn::backend::Dispatch as CpuBatchNorm>::cpu_batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        fuse_relu,
    );
    let (mean, variance) = (Tensor::<1>::from_dispatch(mean), Tensor::<1>::from_dispatch(variance));
    // Burn's BatchNorm::forward_train, to the letter.
    let momentum = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean.mul_scalar(1.0 - momentum).add(mean.detach().mul_scalar(momentum));
    let running_var = running_var.mul_scalar(1.0 - momentum).add(variance.detach().mul_scalar(momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    Tensor::from_dispatch(out)
}

/// The running statistics folded into one scale and shift per channel (by Burn's ops, so that
/// gamma and beta still get their gradients if they are tracked), applied in one pass.
fn inference(bn: &BatchNorm, x: Tensor<4>, fuse_relu: bool) -> Tensor<4> {
    let device = x.device();
    let mean = bn.running_mean.value().to_device(&device);
    let var = bn.running_var.value().to_device(&device);
    let scale = bn.gamma.val() / var.add_scalar(bn.epsilon).sqrt();
    let shift = bn.beta.val() - mean * scale.clone();
    Tensor::from_dispatch(<burn::backend::Dispatch as CpuBatchNorm>::cpu_scale_shift(
        x.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        fuse_relu,
    ))
}

/// `[batch, channels, plane]`: an NCHW tensor with its spatial dimensions flattened.
#[derive(Clone, Copy)]
struct Layout {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Layout {
    fn of(x: &FlexTensor) -> Self {
        let dims = shape(x);
        Self { batch: dims[0], channels: dims[1], plane: dims[2..].iter().product() }
    }

    /// Values per channel: the count the statistics average over.
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }

    /// Channel `c`'s values, image by image.
    fn channel<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        (0..self.batch).map(move |n| &data[(n * self.channels + c) * self.plane..][..self.plane])
    }
}

/// `sum f(x, g)` over two equally long slices in eight running sums (so that it vectorises; a
/// plane is at most a few thousand values, which f32 sums well), in a fixed order.
fn plane_sum(xs: &[f32], gs: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f32; LANES];
    let (x_chunks, g_chunks) = (xs.chunks_exact(LANES), gs.chunks_exact(LANES));
    let rest: f32 = x_chunks.remainder().iter().zip(g_chunks.remainder()).map(|(&x, &g)| f(x, g)).sum();
    for (x, g) in x_chunks.zip(g_chunks) {
        for lane in 0..LANES {
            lanes[lane] += f(x[lane], g[lane]);
        }
    }
    (lanes.iter().sum::<f32>() + rest) as f64
}

/// `sum f(x, g)` over channel `c` of two tensors of `layout`, planes added in f64.
fn channel_sum(x: &[f32], g: &[f32], layout: Layout, c: usize, f: impl Fn(f32, f32) -> f32 + Copy) -> f64 {
    layout.channel(x, c).zip(layout.channel(g, c)).map(|(xs, gs)| plane_sum(xs, gs, f)).sum()
}

/// Per-channel mean and biased variance (two passes, channels across threads).
fn statistics(x: &[f32], layout: Layout) -> (Vec<f32>, Vec<f32>) {
    (0..layout.channels)
        .into_par_iter()
        .map(|c| {
            let mean = (channel_sum(x, x, layout, c, |v, _| v) / layout.count()) as f32;
            let var = channel_sum(x, x, layout, c, |v, _| (v - mean) * (v - mean)) / layout.count();
            (mean, var as f32)
        })
        .unzip()
}

/// The normalisation as one scale and shift per channel: `y = x * scale + shift`.
struct Affine {
    inv_std: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl Affine {
    fn new(gamma: &[f32], beta: &[f32], mean: &[f32], variance: &[f32], epsilon: f64) -> Self {
        let inv_std: Vec<f32> = variance.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect();
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
        let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        Self { inv_std, scale, shift }
    }
}

/// Apply `f(channel, values of that channel in one image, the same span of out)` to every
/// image's channels, images across threads.
fn per_image(layout: Layout, out: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    out.par_chunks_mut(layout.channels * layout.plane).enumerate().for_each(|(n, image)| {
        for (c, span) in image.chunks_mut(layout.plane).enumerate() {
            f(c, (n * layout.channels + c) * layout.plane, span);
        }
    });
}

fn forward(x: &[f32], gamma: &[f32], beta: &[f32], layout: Layout, epsilon: f64, fuse_relu: bool) -> [Vec<f32>; 3] {
    let (mean, variance) = statistics(x, layout);
    let affine = Affine::new(gamma, beta, &mean, &variance, epsilon);
    [scale_shift(x, &affine.scale, &affine.shift, layout, fuse_relu), mean, variance]
}

/// Gradients of x, gamma and beta: with g the upstream gradient (zero where ReLU cut the output)
/// and xhat the normalised input, dbeta = sum g, dgamma = sum g xhat, and
/// dx = gamma inv_std (g - mean g - xhat mean(g xhat)), as Burn's `batch_norm_train_backward`.
fn backward(
    x: &[f32],
    stats: [&[f32]; 4],
    grad: &[f32],
    layout: Layout,
    epsilon: f64,
    fuse_relu: bool,
) -> [Vec<f32>; 3] {
    let [gamma, beta, mean, variance] = stats;
    let affine = Affine::new(gamma, beta, mean, variance, epsilon);
    // The upstream gradient where the output passed the ReLU (the forward's own test).
    let kept = |c: usize| {
        let (scale, shift) = (affine.scale[c], affine.shift[c]);
        move |v: f32, g: f32| if fuse_relu && v * scale + shift <= 0.0 { 0.0 } else { g }
    };
    let (beta_grad, gamma_grad): (Vec<f32>, Vec<f32>) = (0..layout.channels)
        .into_par_iter()
        .map(|c| {
            let (kept, m, s) = (kept(c), mean[c], affine.inv_std[c]);
            let sum_g = channel_sum(x, grad, layout, c, kept);
            let sum_gx = channel_sum(x, grad, layout, c, move |v, g| kept(v, g) * (v - m) * s);
            (sum_g as f32, sum_gx as f32)
        })
        .unzip();
    let mut dx = zeros(x.len());
    let count = layout.count() as f32;
    per_image(layout, &mut dx, |c, start, out| {
        let (kept, m, s) = (kept(c), mean[c], affine.inv_std[c]);
        let (mean_g, mean_gx, factor) = (beta_grad[c] / count, gamma_grad[c] / count, gamma[c] * s);
        for ((o, &v), &g) in out.iter_mut().zip(&x[start..]).zip(&grad[start..]) {
            *o = factor * (kept(v, g) - mean_g - (v - m) * s * mean_gx);
        }
    });
    [dx, gamma_grad, beta_grad]
}

fn scale_shift(x: &[f32], scale: &[f32], shift: &[f32], layout: Layout, fuse_relu: bool) -> Vec<f32> {
    let mut y = zeros(x.len());
    per_image(layout, &mut y, |c, start, out| {
        let (scale, shift) = (scale[c], shift[c]);
        for (o, &v) in out.iter_mut().zip(&x[start..]) {
            let pre = v * scale + shift;
            *o = if fuse_relu { pre.max(0.0) } else { pre };
        }
    });
    y
}

/// Gradients of x and, with `parameters`, of scale and shift (zeros without: an attack needs
/// only the input's).
fn scale_shift_backward(
    x: &[f32],
    [scale, shift]: [&[f32]; 2],
    grad: &[f32],
    layout: Layout,
    fuse_relu: bool,
    parameters: bool,
) -> [Vec<f32>; 3] {
    let kept = |c: usize| {
        let (scale, shift) = (scale[c], shift[c]);
        move |v: f32, g: f32| if fuse_relu && v * scale + shift <= 0.0 { 0.0 } else { g }
    };
    let mut dx = zeros(x.len());
    per_image(layout, &mut dx, |c, start, out| {
        let (kept, scale) = (kept(c), scale[c]);
        for ((o, &v), &g) in out.iter_mut().zip(&x[start..]).zip(&grad[start..]) {
            *o = kept(v, g) * scale;
        }
    });
    let (dscale, dshift) = if parameters {
        (0..layout.channels)
            .into_par_iter()
            .map(|c| {
                let kept = kept(c);
                let dscale = channel_sum(x, grad, layout, c, move |v, g| kept(v, g) * v);
                (dscale as f32, channel_sum(x, grad, layout, c, kept) as f32)
            })
            .unzip()
    } else {
        (vec![0.0; layout.channels], vec![0.0; layout.channels])
    };
    [dx, dscale, dshift]
}

/// The fused op as a Burn backend extension: flex runs this module's kernels, autodiff records
/// one node whose backward calls them.
#[backend_extension(Flex, Autodiff)]
pub trait CpuBatchNorm: Backend {
    /// The normalised output (after ReLU when `fuse_relu`), the batch mean and the biased batch
    /// variance.
    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        fuse_relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// The gradients of x, gamma and beta given the output's.
    #[allow(clippy::too_many_arguments)]
    fn cpu_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        fuse_relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// `x * scale + shift` per channel (then ReLU when `fuse_relu`): BatchNorm in inference.
    fn cpu_scale_shift(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        fuse_relu: bool,
    ) -> FloatTensor<Self>;
    /// The gradients of x, scale and shift given the output's (those of scale and shift only
    /// with `parameters`, zeros otherwise).
    fn cpu_scale_shift_backward(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        fuse_relu: bool,
        parameters: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl CpuBatchNorm for Flex {
    fn cpu_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        fuse_relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let layout = Layout::of(&x);
        let dims = shape(&x);
        let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
        let [y, mean, variance] =
            forward(x.storage::<f32>(), gamma.storage::<f32>(), beta.storage::<f32>(), layout, epsilon, fuse_relu);
        let c = vec![layout.channels];
        (flex_tensor(y, dims), flex_tensor(mean, c.clone()), flex_tensor(variance, c))
    }

    fn cpu_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
        fuse_relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let layout = Layout::of(&x);
        let dims = shape(&x);
        let [x, gamma, beta, mean, variance, grad] = [x, gamma, beta, mean, variance, grad].map(|t| t.to_contiguous());
        let stats = [&gamma, &beta, &mean, &variance].map(|t| t.storage::<f32>());
        let [dx, dgamma, dbeta] =
            backward(x.storage::<f32>(), stats, grad.storage::<f32>(), layout, epsilon, fuse_relu);
        let c = vec![layout.channels];
        (flex_tensor(dx, dims), flex_tensor(dgamma, c.clone()), flex_tensor(dbeta, c))
    }

    fn cpu_scale_shift(x: FlexTensor, scale: FlexTensor, shift: FlexTensor, fuse_relu: bool) -> FlexTensor {
        let (layout, dims) = (Layout::of(&x), shape(&x));
        let [x, scale, shift] = [x, scale, shift].map(|t| t.to_contiguous());
        let y = scale_shift(x.storage::<f32>(), scale.storage::<f32>(), shift.storage::<f32>(), layout, fuse_relu);
        flex_tensor(y, dims)
    }

    fn cpu_scale_shift_backward(
        x: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        grad: FlexTensor,
        fuse_relu: bool,
        parameters: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (layout, dims) = (Layout::of(&x), shape(&x));
        let [x, scale, shift, grad] = [x, scale, shift, grad].map(|t| t.to_contiguous());
        let affine = [scale.storage::<f32>(), shift.storage::<f32>()];
        let [dx, dscale, dshift] =
            scale_shift_backward(x.storage::<f32>(), affine, grad.storage::<f32>(), layout, fuse_relu, parameters);
        let c = vec![layout.channels];
        (flex_tensor(dx, dims), flex_tensor(dscale, c.clone()), flex_tensor(dshift, c))
    }
}

#[derive(Debug)]
struct CpuBatchNormBackward;

impl<B: Backend + CpuBatchNorm> Backward<B, 3> for CpuBatchNormBackward {
    /// x, gamma and beta (checkpointed), the batch statistics, epsilon, whether ReLU is fused.
    type State = (NodeId, NodeId, NodeId, B::FloatTensorPrimitive, B::FloatTensorPrimitive, f64, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta_state, mean, variance, epsilon, fuse_relu) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(beta_state);
        let (dx, dgamma, dbeta) =
            B::cpu_batch_norm_train_backward(x, gamma, beta, mean, variance, grad, epsilon, fuse_relu);
        for (node, gradient) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, gradient);
            }
        }
    }
}

#[derive(Debug)]
struct CpuScaleShiftBackward;

impl<B: Backend + CpuBatchNorm> Backward<B, 3> for CpuScaleShiftBackward {
    /// x, scale and shift (checkpointed), whether ReLU is fused.
    type State = (NodeId, NodeId, NodeId, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_scale, node_shift] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, scale_state, shift_state, fuse_relu) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let scale = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(scale_state);
        let shift = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(shift_state);
        let parameters = node_scale.is_some() || node_shift.is_some();
        let (dx, dscale, dshift) = B::cpu_scale_shift_backward(x, scale, shift, grad, fuse_relu, parameters);
        for (node, gradient) in [(node_x, dx), (node_scale, dscale), (node_shift, dshift)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, gradient);
            }
        }
    }
}

impl<B: Backend + CpuBatchNorm, C: CheckpointStrategy> CpuBatchNorm for Autodiff<B, C> {
    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        fuse_relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // The statistics leave as constants, as Burn's op returns them (detached).
        match CpuBatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let states = (prep.checkpoint(&x), prep.checkpoint(&gamma), prep.checkpoint(&beta));
                let (out, mean, variance) = B::cpu_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    fuse_relu,
                );
                let state = (states.0, states.1, states.2, mean.clone(), variance.clone(), epsilon, fuse_relu);
                (prep.finish(state, out), Self::from_inner(mean), Self::from_inner(variance))
            }
            OpsKind::UnTracked(prep) => {
                let (out, mean, variance) = B::cpu_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    fuse_relu,
                );
                (prep.finish(out), Self::from_inner(mean), Self::from_inner(variance))
            }
        }
    }

    // The gradients themselves, as constants: nothing here differentiates a gradient again.
    fn cpu_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        fuse_relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [x, gamma, beta, mean, variance, grad] = [x, gamma, beta, mean, variance, grad].map(|t| t.into_primitive());
        let (dx, dgamma, dbeta) =
            B::cpu_batch_norm_train_backward(x, gamma, beta, mean, variance, grad, epsilon, fuse_relu);
        (Self::from_inner(dx), Self::from_inner(dgamma), Self::from_inner(dbeta))
    }

    fn cpu_scale_shift(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        fuse_relu: bool,
    ) -> FloatTensor<Self> {
        match CpuScaleShiftBackward.prepare::<C>([x.node(), scale.node(), shift.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&scale), prep.checkpoint(&shift), fuse_relu);
                let out =
                    B::cpu_scale_shift(x.into_primitive(), scale.into_primitive(), shift.into_primitive(), fuse_relu);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_scale_shift(
                x.into_primitive(),
                scale.into_primitive(),
                shift.into_primitive(),
                fuse_relu,
            )),
        }
    }

    fn cpu_scale_shift_backward(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        fuse_relu: bool,
        parameters: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [x, scale, shift, grad] = [x, scale, shift, grad].map(|t| t.into_primitive());
        let (dx, dscale, dshift) = B::cpu_scale_shift_backward(x, scale, shift, grad, fuse_relu, parameters);
        (Self::from_inner(dx), Self::from_inner(dscale), Self::from_inner(dshift))
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Param, RunningState};
    use burn::nn::BatchNormConfig;
    use burn::tensor::Device;

    use super::*;
    use crate::flex::testing::{max_difference, random};
    use crate::model::{tensor_from, to_vec};
    use crate::rng::Rng;

    /// A BatchNorm with non-trivial gamma, beta and running statistics on `device`, from `seed`
    /// (a clone of a BatchNorm shares its running statistics, so every run builds its own).
    fn layer(channels: usize, seed: u64, training: bool, device: &Device) -> BatchNorm {
        let rng = &mut Rng::new(seed);
        let mut bn = BatchNormConfig::new(channels).with_epsilon(1e-5).init(device);
        bn.gamma = Param::from_tensor(random([channels], 0.5, 1.5, rng, device));
        bn.beta = Param::from_tensor(random([channels], -0.5, 0.5, rng, device));
        bn.running_mean = RunningState::new(random([channels], -0.3, 0.3, rng, device));
        bn.running_var = RunningState::new(random([channels], 0.5, 2.0, rng, device));
        bn.training = Param::from_bool(training);
        bn
    }

    /// The output, then the gradients of x, gamma and beta (those tracked), then the running
    /// mean and variance after the call.
    fn outputs(
        bn: BatchNorm,
        x: &Tensor<4>,
        g: &Tensor<4>,
        run: impl Fn(&BatchNorm, Tensor<4>) -> Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>, Vec<Tensor<1>>) {
        let leaf = x.clone().require_grad();
        let y = run(&bn, leaf.clone());
        let grads = (y.clone() * g.clone()).sum().backward();
        let dx = leaf.grad(&grads).expect("x is tracked");
        let mut rest: Vec<Tensor<1>> = [&bn.gamma, &bn.beta].iter().filter_map(|p| p.val().grad(&grads)).collect();
        rest.extend([bn.running_mean.value(), bn.running_var.value()]);
        (y.detach(), dx, rest)
    }

    /// Ours against Burn's `activate(bn.forward(x))` on the autodiff device: training, inference
    /// with tracked parameters, and inference on plain parameters (how an attack runs).
    #[test]
    fn matches_burns_batch_norm_and_activation_with_every_gradient_and_the_running_statistics() {
        let autodiff = Device::flex().autodiff();
        let mut rng = Rng::new(7);
        let modes = [
            ("training", true, autodiff.clone()),
            ("inference", false, autodiff.clone()),
            ("attack", false, Device::flex()),
        ];
        for (mode, training, params) in modes {
            for activation in [Activation::Relu, Activation::Swish] {
                for shape in [[4, 3, 5, 5], [3, 6, 8, 8], [5, 2, 1, 1]] {
                    let seed = rng.next_u64();
                    let bn = || layer(shape[1], seed, training, &params);
                    // Offset and scaled so that the statistics matter and ReLU cuts some output.
                    let x = random(shape, -1.0, 2.0, &mut rng, &autodiff);
                    let g = random(shape, -1.0, 1.0, &mut rng, &autodiff);
                    let ours = outputs(bn(), &x, &g, |bn, x| batch_norm_activate(bn, x, activation));
                    let burns = outputs(bn(), &x, &g, |bn, x| activate(bn.forward(x), activation));
                    let case = format!("{mode} {activation:?} {shape:?}");
                    assert!(max_difference(ours.0, burns.0) < 1e-5, "{case}: output differs");
                    assert!(max_difference(ours.1, burns.1) < 1e-4, "{case}: input gradient differs");
                    let expected = if mode == "attack" { 2 } else { 4 };
                    assert_eq!((ours.2.len(), burns.2.len()), (expected, expected), "{case}: tracked gradients");
                    for (i, (a, b)) in ours.2.into_iter().zip(burns.2).enumerate() {
                        assert!(
                            max_difference(a, b) < 1e-4,
                            "{case}: gamma, beta, running mean, variance: {i} differs"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn without_autodiff_it_normalises_by_the_running_statistics() {
        let device = Device::flex();
        let x = random([6, 4, 5, 5], -1.0, 2.0, &mut Rng::new(9), &device);
        let bn = layer(4, 9, true, &device);
        let ours = batch_norm_activate(&bn, x.clone(), Activation::Relu);
        assert!(max_difference(ours.clone(), activate(bn.forward(x.clone()), Activation::Relu)) < 1e-6);
        // The batch's own statistics (what training uses) give another result.
        let autodiff = Device::flex().autodiff();
        let batch = batch_norm_activate(&layer(4, 9, true, &autodiff), x.clone().autodiff(), Activation::Relu);
        let batch = tensor_from(to_vec(batch), [6, 4, 5, 5], &device);
        assert!(max_difference(ours, batch) > 1e-2, "inference used the batch statistics");
    }

    #[test]
    fn the_results_do_not_depend_on_the_threads() {
        let device = Device::flex().autodiff();
        let mut rng = Rng::new(8);
        let x = random([9, 5, 6, 6], -1.0, 2.0, &mut rng, &device);
        let g = random([9, 5, 6, 6], -1.0, 1.0, &mut rng, &device);
        let run = || {
            [true, false].map(|training| {
                let (y, dx, rest) = outputs(layer(5, 10, training, &device), &x, &g, |bn, x| {
                    batch_norm_activate(bn, x, Activation::Relu)
                });
                [y.into_data(), dx.into_data()]
                    .into_iter()
                    .chain(rest.into_iter().map(|t| t.into_data()))
                    .collect::<Vec<_>>()
            })
        };
        let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
        let four_threads = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap().install(run);
        assert!(one_thread == four_threads, "the threads changed the bits");
    }
}
