//! The 2-D convolution of the extractor on Burn's CPU backend (flex), forward and both
//! gradients, as one image per task: im2col by row copies, then one GEMM per image (the `gemm`
//! crate that flex itself uses) straight into the output.
//!
//! Why: flex 0.22.1's convolution transposes the whole input to NHWC on the calling thread,
//! gathers im2col element by element into a fresh zeroed buffer per tile and scatters the GEMM
//! result back; its weight gradient is that same convolution with the batch as channels, and
//! its input gradient a transposed convolution of the same make. Those stretches were most of
//! a training step (docs/training.md, "Training speed"). Other backends (wgpu) and
//! configurations this model never uses (groups, dilation, other dtypes) keep Burn's own op.
//!
//! One file past the usual length: the three passes share the geometry and the GEMM view, are
//! only correct together, and their tests check them against Burn's op side by side.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use crate::flex::{FlexTensor, flex_tensor, is_flex, shape, zeros};

/// `conv.forward(x)`, through this module's kernels on the CPU backend.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match cpu_options(conv, &x) {
        Some(options) => Tensor::from_dispatch(<burn::backend::Dispatch as CpuConv>::cpu_conv2d(
            x.into_dispatch(),
            conv.weight.val().into_dispatch(),
            options,
        )),
        None => conv.forward(x),
    }
}

/// The options of `conv` on `x` when this module's kernels run it: on flex (with or without
/// autodiff), without bias, groups or dilation, with explicit or no padding (as model.rs builds
/// every convolution). `None`: Burn's own op.
fn cpu_options(conv: &Conv2d, x: &Tensor<4>) -> Option<ConvOptions<2>> {
    let on_flex = is_flex(&x.device());
    let simple = conv.bias.is_none() && conv.groups == 1 && conv.dilation == [1, 1];
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => return None,
    };
    (on_flex && simple).then(|| ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups))
}

/// What a convolution needs to know of its operands, for one image.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    channels_in: usize,
    height: usize,
    width: usize,
    channels_out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// Padding before the first row and column; the end padding follows from the output size.
    padding: [usize; 2],
    out: [usize; 2],
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], options: &ConvOptions<2>, out: [usize; 2]) -> Self {
        Self {
            batch: x[0],
            channels_in: x[1],
            height: x[2],
            width: x[3],
            channels_out: weight[0],
            kernel: [weight[2], weight[3]],
            stride: options.stride,
            padding: options.padding_begin(),
            out,
        }
    }

    /// Rows of the im2col matrix: one per input channel and kernel position.
    fn patch(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    /// Columns of the im2col matrix: one per output position.
    fn positions(&self) -> usize {
        self.out[0] * self.out[1]
    }

    fn image_len(&self) -> usize {
        self.channels_in * self.height * self.width
    }

    /// A 1x1 stride-1 convolution reads the image itself as its im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// For kernel offset `k` along an axis of input size `size`: the output range whose input
    /// index `o * stride + k - pad` falls inside the image.
    fn valid(out: usize, size: usize, stride: usize, k: usize, pad: usize) -> (usize, usize) {
        let first = pad.saturating_sub(k).div_ceil(stride);
        let last = (size + pad).saturating_sub(k).div_ceil(stride).min(out);
        (first.min(last), last)
    }

    /// Visit every (im2col row, output row) pair whose input row exists:
    /// `f(row, oy, in_row, span)`, `in_row` counting image rows across channels, `span` = (first
    /// ox, last ox exclusive, the input column of the first ox).
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize, (usize, usize, usize))) {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let [ph, pw] = self.padding;
        let [oh, ow] = self.out;
        for c in 0..self.channels_in {
            for ki in 0..kh {
                let (oy0, oy1) = Self::valid(oh, self.height, sh, ki, ph);
                for kj in 0..kw {
                    let row = (c * kh + ki) * kw + kj;
                    let (ox0, ox1) = Self::valid(ow, self.width, sw, kj, pw);
                    for oy in oy0..oy1 {
                        let iy = oy * sh + ki - ph;
                        f(row, oy, c * self.height + iy, (ox0, ox1, ox0 * sw + kj - pw));
                    }
                }
            }
        }
    }

    /// The im2col matrix `[patch, positions]` of one image (zeros where the kernel hangs over),
    /// into `col`, which holds zeros or an earlier image's im2col of this geometry: every image
    /// writes the same entries, so the overhang stays zero without clearing the buffer again
    /// (clearing it per image doubled the writes).
    fn im2col(&self, image: &[f32], col: &mut [f32]) {
        let (ow, sw, l) = (self.out[1], self.stride[1], self.positions());
        self.for_each_run(|row, oy, in_row, (ox0, ox1, ix0)| {
            let dst = &mut col[row * l + oy * ow..][ox0..ox1];
            let src = &image[in_row * self.width..][ix0..];
            if sw == 1 {
                dst.copy_from_slice(&src[..dst.len()]);
            } else {
                dst.iter_mut().zip(src.iter().step_by(sw)).for_each(|(d, s)| *d = *s);
            }
        });
    }

    /// The inverse scatter: add each im2col entry back onto the image position it came from.
    fn col2im_add(&self, col: &[f32], image: &mut [f32]) {
        let (ow, sw, l) = (self.out[1], self.stride[1], self.positions());
        self.for_each_run(|row, oy, in_row, (ox0, ox1, ix0)| {
            let src = &col[row * l + oy * ow..][ox0..ox1];
            let dst = &mut image[in_row * self.width..][ix0..];
            if sw == 1 {
                dst[..src.len()].iter_mut().zip(src).for_each(|(d, s)| *d += *s);
            } else {
                dst.iter_mut().step_by(sw).zip(src).for_each(|(d, s)| *d += *s);
            }
        });
    }
}

/// A strided matrix view for `gemm`: a row-major matrix or its transpose.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    /// Distance between neighbouring columns, and rows.
    col_stride: usize,
    row_stride: usize,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data does not match its shape");
        Self { data, rows, cols, col_stride: 1, row_stride: cols }
    }

    fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, col_stride: self.row_stride, row_stride: self.col_stride, ..self }
    }
}

/// `dst = a * b` (or `dst += a * b` with `accumulate`), dst row-major `[a.rows, b.cols]`, on the
/// calling thread (the callers parallelise over images).
fn matmul(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!(dst.len(), a.rows * b.cols, "destination does not match the product");
    let (a_cs, a_rs, b_cs, b_rs) =
        (a.col_stride as isize, a.row_stride as isize, b.col_stride as isize, b.row_stride as isize);
    // SAFETY: the three slices hold exactly the matrices the shapes and strides describe (views
    // come only from `Mat::new`, which checks the length, and `t`, which keeps it; `dst` is
    // checked above), and `dst` is borrowed mutably, so nothing aliases it.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Output spatial size of a convolution (Burn's formula, explicit begin and end padding).
fn output_size(size: usize, kernel: usize, stride: usize, pad_begin: usize, pad_end: usize) -> usize {
    (size + pad_begin + pad_end - kernel) / stride + 1
}

fn forward(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let (xs, ws) = (shape(x), shape(weight));
    let (x, w) = (x.to_contiguous(), weight.to_contiguous());
    let [pt, pl] = options.padding_begin();
    let [pb, pr] = options.padding_end();
    let out =
        [output_size(xs[2], ws[2], options.stride[0], pt, pb), output_size(xs[3], ws[3], options.stride[1], pl, pr)];
    let g = Geometry::new(&xs, &ws, options, out);
    let (x, w) = (x.storage::<f32>(), w.storage::<f32>());
    let weights = Mat::new(w, g.channels_out, g.patch());
    let mut y = zeros(g.batch * g.channels_out * g.positions());
    y.par_chunks_mut(g.channels_out * g.positions()).enumerate().for_each_init(
        || vec![0.0f32; if g.is_pointwise() { 0 } else { g.patch() * g.positions() }],
        |col, (b, out)| {
            let image = &x[b * g.image_len()..][..g.image_len()];
            let col = if g.is_pointwise() {
                image
            } else {
                g.im2col(image, col);
                col
            };
            matmul(out, weights, Mat::new(col, g.patch(), g.positions()), false);
        },
    );
    flex_tensor(y, vec![g.batch, g.channels_out, out[0], out[1]])
}

fn geometry_of(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> Geometry {
    let gs = shape(grad);
    Geometry::new(&shape(x), &shape(weight), options, [gs[2], gs[3]])
}

fn input_gradient(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let g = geometry_of(x, weight, grad, options);
    let (w, grad) = (weight.to_contiguous(), grad.to_contiguous());
    let (w, grad) = (w.storage::<f32>(), grad.storage::<f32>());
    let weights_t = Mat::new(w, g.channels_out, g.patch()).t();
    let per_image = g.channels_out * g.positions();
    let mut dx = zeros(g.batch * g.image_len());
    dx.par_chunks_mut(g.image_len()).enumerate().for_each_init(
        || vec![0.0f32; g.patch() * g.positions()],
        |col, (b, image)| {
            let upstream = Mat::new(&grad[b * per_image..][..per_image], g.channels_out, g.positions());
            if g.is_pointwise() {
                matmul(image, weights_t, upstream, false);
            } else {
                matmul(col, weights_t, upstream, false);
                g.col2im_add(col, image);
            }
        },
    );
    flex_tensor(dx, vec![g.batch, g.channels_in, g.height, g.width])
}

/// Images summed into one partial weight gradient (a fixed number: see `weight_gradient`).
const IMAGES_PER_PARTIAL_SUM: usize = 16;

fn weight_gradient(x: &FlexTensor, weight: &FlexTensor, grad: &FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let g = geometry_of(x, weight, grad, options);
    let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
    let (x, grad) = (x.storage::<f32>(), grad.storage::<f32>());
    let per_image = g.channels_out * g.positions();
    let len = g.channels_out * g.patch();
    // Fixed groups of images each sum into a partial gradient, in image order; the partials are
    // added in group order. The grouping depends on the batch alone, not on the threads or on
    // work stealing, so the sum is the same bits on every run (resumed training must match).
    // On large images the patches go to gemm positions-major ([positions, patch]): read
    // patch-major, as im2col writes them, gemm packs them with strided reads, and the 16->16
    // convolution at 32x32 ran at a fifth of the others' speed (31 ms a batch, 12 transposed);
    // below 256 positions the transpose costs more than it saves.
    let positions_major = g.positions() >= 256;
    let buffer = |needed: bool| vec![0.0f32; if needed { g.patch() * g.positions() } else { 0 }];
    let images: Vec<usize> = (0..g.batch).collect();
    let partials: Vec<Vec<f32>> = images
        .par_chunks(IMAGES_PER_PARTIAL_SUM)
        .map(|group| {
            let (mut dw, mut col, mut patches) =
                (vec![0.0f32; len], buffer(!g.is_pointwise()), buffer(positions_major));
            for &b in group {
                let image = &x[b * g.image_len()..][..g.image_len()];
                let col_ref = if g.is_pointwise() {
                    image
                } else {
                    g.im2col(image, &mut col);
                    &col
                };
                let upstream = Mat::new(&grad[b * per_image..][..per_image], g.channels_out, g.positions());
                let patches_t = if positions_major {
                    transpose(col_ref, g.patch(), g.positions(), &mut patches);
                    Mat::new(&patches, g.positions(), g.patch())
                } else {
                    Mat::new(col_ref, g.patch(), g.positions()).t()
                };
                matmul(&mut dw, upstream, patches_t, true);
            }
            dw
        })
        .collect();
    let mut dw = vec![0.0f32; len];
    for partial in &partials {
        dw.iter_mut().zip(partial).for_each(|(a, b)| *a += b);
    }
    flex_tensor(dw, shape(weight))
}

/// `dst = src^T` for a row-major `[rows, cols]` `src`, in square tiles so that both sides stay
/// in cache.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 16;
    assert!(src.len() == rows * cols && dst.len() == rows * cols, "transpose: sizes differ");
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// The convolution as a Burn backend extension: flex runs this module's kernels, autodiff
/// records one node whose backward calls them.
#[backend_extension(Flex, Autodiff)]
pub trait CpuConv: Backend {
    fn cpu_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;
    fn cpu_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
    fn cpu_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// Only f32 runs here; anything else takes flex's own op.
fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

impl CpuConv for Flex {
    fn cpu_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        if !all_f32(&[&x, &weight]) {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options);
        }
        forward(&x, &weight, &options)
    }

    fn cpu_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !all_f32(&[&x, &weight, &grad]) {
            return <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, weight, grad, options);
        }
        input_gradient(&x, &weight, &grad, &options)
    }

    fn cpu_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !all_f32(&[&x, &weight, &grad]) {
            return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, grad, options);
        }
        weight_gradient(&x, &weight, &grad, &options)
    }
}

#[derive(Debug)]
struct CpuConvBackward;

impl<B: Backend + CpuConv> Backward<B, 2> for CpuConvBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        if let Some(node) = node_x {
            let dx = B::cpu_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, B::cpu_conv2d_weight_backward(x, weight, grad, options));
        }
    }
}

impl<B: Backend + CpuConv, C: CheckpointStrategy> CpuConv for Autodiff<B, C> {
    fn cpu_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        match CpuConvBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = B::cpu_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::cpu_conv2d(x.into_primitive(), weight.into_primitive(), options))
            }
        }
    }

    // The gradients themselves, as constants: nothing here differentiates a gradient again.
    fn cpu_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let (x, weight, grad) = (x.into_primitive(), weight.into_primitive(), grad.into_primitive());
        Self::from_inner(B::cpu_conv2d_x_backward(x, weight, grad, options))
    }

    fn cpu_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let (x, weight, grad) = (x.into_primitive(), weight.into_primitive(), grad.into_primitive());
        Self::from_inner(B::cpu_conv2d_weight_backward(x, weight, grad, options))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Device;

    use super::*;
    use crate::flex::testing::max_difference;
    use crate::model::to_vec;
    use crate::rng::Rng;

    fn random(shape: [usize; 4], rng: &mut Rng, device: &Device) -> Tensor<4> {
        crate::flex::testing::random(shape, -0.5, 0.5, rng, device)
    }

    /// Output, input gradient and weight gradient of `conv` on `x` under upstream gradient `g`,
    /// through `run`.
    fn outputs(
        conv: &Conv2d,
        x: &Tensor<4>,
        g: &Tensor<4>,
        run: impl Fn(&Conv2d, Tensor<4>) -> Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let leaf = x.clone().require_grad();
        let y = run(conv, leaf.clone());
        let grads = (y.clone() * g.clone()).sum().backward();
        let dx = leaf.grad(&grads).expect("x is tracked");
        let dw = conv.weight.val().grad(&grads).expect("the weight is tracked");
        (y.detach(), dx, dw)
    }

    #[test]
    fn matches_burns_convolution_and_both_gradients() {
        let device = Device::flex().autodiff();
        let mut rng = Rng::new(3);
        // (in, out, size, kernel, stride, padding top/left/bottom/right): every convolution the
        // presets build, the paper's bottom-and-right padding included, and odd sizes.
        let cases = [
            (3, 4, 9, 3, 1, (1, 1, 1, 1)),
            (4, 6, 8, 3, 2, (1, 1, 1, 1)),
            (4, 6, 8, 3, 2, (0, 0, 1, 1)),
            (5, 3, 7, 3, 2, (1, 1, 1, 1)),
            (4, 6, 8, 1, 2, (0, 0, 0, 0)),
            (6, 4, 5, 1, 1, (0, 0, 0, 0)),
            (2, 3, 6, 3, 1, (0, 0, 0, 0)),
            // At least 256 output positions: the weight gradient's positions-major path.
            (3, 4, 16, 3, 1, (1, 1, 1, 1)),
            (2, 3, 33, 3, 2, (0, 0, 1, 1)),
        ];
        for (cin, cout, size, kernel, stride, (top, left, bottom, right)) in cases {
            let conv = Conv2dConfig::new([cin, cout], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(top, left, bottom, right))
                .with_bias(false)
                .init(&device);
            let x = random([3, cin, size, size], &mut rng, &device);
            let out = (size + top + bottom - kernel) / stride + 1;
            let g = random([3, cout, out, out], &mut rng, &device);
            // On one thread, every image after the first reuses the first one's im2col buffer.
            let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let ours = one_thread.install(|| outputs(&conv, &x, &g, conv2d));
            let burns = outputs(&conv, &x, &g, |c, x| c.forward(x));
            let case = format!("{cin}->{cout} {size}x{size} k{kernel} s{stride} pad {top},{left},{bottom},{right}");
            assert!(cpu_options(&conv, &x).is_some(), "{case}: not run by this module");
            assert_eq!(ours.0.dims(), burns.0.dims(), "{case}");
            for (name, a, b) in [("output", ours.0, burns.0), ("input gradient", ours.1, burns.1)] {
                assert!(max_difference(a, b) < 1e-5, "{case}: {name} differs");
            }
            assert!(max_difference(ours.2, burns.2) < 1e-4, "{case}: weight gradient differs");
        }
    }

    #[test]
    fn the_weight_gradient_is_the_same_bits_on_one_thread_and_on_many() {
        let device = Device::flex();
        let mut rng = Rng::new(5);
        // More images than one partial sum holds, on the positions-major path and off it.
        for (size, batch) in [(16, 3 * IMAGES_PER_PARTIAL_SUM + 5), (6, 2 * IMAGES_PER_PARTIAL_SUM + 1)] {
            let x = random([batch, 3, size, size], &mut rng, &device);
            let w = random([4, 3, 3, 3], &mut rng, &device);
            let g = random([batch, 4, size, size], &mut rng, &device);
            let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            let run =
                || {
                    let (x, w, g) = (x.clone().into_dispatch(), w.clone().into_dispatch(), g.clone().into_dispatch());
                    to_vec(Tensor::<4>::from_dispatch(
                        <burn::backend::Dispatch as CpuConv>::cpu_conv2d_weight_backward(x, w, g, options.clone()),
                    ))
                };
            let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
            let four_threads = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap().install(run);
            assert_eq!(one_thread, four_threads, "{size}x{size}, batch {batch}");
            assert_eq!(run(), run());
        }
    }

    #[test]
    fn plain_tensors_run_here_and_a_bias_keeps_burns_op() {
        let mut rng = Rng::new(4);
        let plain = Device::flex();
        let conv = Conv2dConfig::new([2, 3], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(&plain);
        let x = random([2, 2, 5, 5], &mut rng, &plain);
        // This conv has a bias, so it takes Burn's path; without one, ours, with the same result.
        assert!(cpu_options(&conv, &x).is_none());
        let with_bias = conv2d(&conv, x.clone());
        let conv = Conv2d { bias: None, ..conv };
        assert!(cpu_options(&conv, &x).is_some());
        assert!(max_difference(conv2d(&conv, x.clone()), conv.forward(x.clone())) < 1e-5);
        assert!(max_difference(with_bias, conv.forward(x)) > 1e-6, "the bias was dropped");
    }
}
