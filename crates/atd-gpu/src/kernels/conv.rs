//! `shaders/conv.wgsl`: convolutions and their input gradients: the parameter struct, the
//! geometry and strategy, the op constructors and the CPU reference.

use atd_core::card::Padding;

use super::{Kernel, KernelParams, Op, PARAMS_BYTES, ix, u};

kernel_params! {
    /// `shaders/conv.wgsl`: a convolution without bias (NCHW, weights `[cout, cin, k, k]`) and
    /// its input gradient (then `input` is d output and `output` d input).
    ConvParams {
        input: u32,
        weights: u32,
        output: u32,
        batch: u32,
        cin: u32,
        cout: u32,
        hin: u32,
        win: u32,
        hout: u32,
        wout: u32,
        k: u32,
        stride: u32,
        pad_top: u32,
        pad_left: u32,
        /// Add to `output` instead of overwriting it.
        accumulate: u32,
        pad0: u32,
    }
}

/// Channels per thread in the convolution kernels (`BLOCK` in shaders/conv.wgsl).
pub const CONV_BLOCK: usize = 4;
/// The tiled forward convolution's output tile side and channels per workgroup (`TILE`,
/// `TILE_CHANNELS` in shaders/conv.wgsl); its workgroups are 256 invocations.
pub const CONV_TILE: usize = 8;
pub const CONV_TILE_CHANNELS: usize = 16;

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

impl Op {
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
}

/// Convolution forward, and its backward to the input, as a matrix product over patches
/// (im2col): each output is the sum over (channel, ky, kx) in the order the WGSL kernels add
/// them, so the results are the same to the bit, but the inner loops run over contiguous rows
/// of pixels and vectorise.
pub(super) fn run(op: &Op, w: &[f32], a: &mut [f32]) {
    let p: ConvParams = op.params();
    let (from, wt, to, batch) = (ix(p.input), ix(p.weights), ix(p.output), ix(p.batch));
    let (cin, cout, hin, win) = (ix(p.cin), ix(p.cout), ix(p.hin), ix(p.win));
    let (hout, wout, k, stride) = (ix(p.hout), ix(p.wout), ix(p.k), ix(p.stride));
    let (pad_top, pad_left, accumulate) = (p.pad_top as isize, p.pad_left as isize, p.accumulate != 0);
    let forward = op.kernel != Kernel::ConvBackwardInput;
    let weights = &w[wt..][..cout * cin * k * k];
    // Forward: out[co] = sum over (ci, ky, kx) of w[co, ci, ky, kx] * in[ci] shifted by (ky, kx).
    // Backward: dx[ci] = sum over (co, ky, kx) of w[co, ci, ky, kx] * dy[co] shifted back.
    let (sources, targets, (sh, sw), (th, tw)) =
        if forward { (cin, cout, (hin, win), (hout, wout)) } else { (cout, cin, (hout, wout), (hin, win)) };
    let transposed;
    let matrix: &[f32] = if forward {
        weights
    } else {
        let mut t = Vec::with_capacity(weights.len());
        for ci in 0..cin {
            for co in 0..cout {
                t.extend_from_slice(&weights[(co * cin + ci) * k * k..][..k * k]);
            }
        }
        transposed = t;
        &transposed
    };
    // Where target row ty (column tx) reads in the source plane for kernel row ky (column kx).
    let source = |target: usize, kernel: usize, pad: isize, size: usize| -> Option<usize> {
        let at = if forward {
            Some(target as isize * stride as isize + kernel as isize - pad)
        } else {
            source_index(target as isize + pad - kernel as isize, stride)
        };
        at.filter(|&v| (0..size as isize).contains(&v)).map(|v| v as usize)
    };
    let rows: Vec<Vec<Option<usize>>> =
        (0..k).map(|ky| (0..th).map(|ty| source(ty, ky, pad_top, sh)).collect()).collect();
    let cols: Vec<Vec<Option<usize>>> =
        (0..k).map(|kx| (0..tw).map(|tx| source(tx, kx, pad_left, sw)).collect()).collect();
    let (depth, pixels) = (sources * k * k, th * tw);
    let mut columns = vec![0.0f32; depth * pixels];
    let mut out = vec![0.0f32; targets * pixels];
    for n in 0..batch {
        let input = &a[from + n * sources * sh * sw..][..sources * sh * sw];
        for (row, column) in columns.chunks_exact_mut(pixels).enumerate() {
            let (s, ky, kx) = (row / (k * k), (row / k) % k, row % k);
            let plane = &input[s * sh * sw..][..sh * sw];
            for (ty, line) in column.chunks_exact_mut(tw).enumerate() {
                match rows[ky][ty] {
                    Some(y) => {
                        for (value, x) in line.iter_mut().zip(&cols[kx]) {
                            *value = x.map_or(0.0, |x| plane[y * sw + x]);
                        }
                    }
                    None => line.fill(0.0),
                }
            }
        }
        matrix_product(matrix, &columns, &mut out, targets, depth, pixels);
        let dest = &mut a[to + n * targets * pixels..][..targets * pixels];
        for (d, v) in dest.iter_mut().zip(&out) {
            *d = if accumulate { v + *d } else { *v };
        }
    }
}

/// The position a transposed convolution reads from: `offset / stride` when it divides.
fn source_index(offset: isize, stride: usize) -> Option<isize> {
    (offset.rem_euclid(stride as isize) == 0).then(|| offset.div_euclid(stride as isize))
}

/// out[t, p] = sum over d of matrix[t, d] * columns[d, p], adding d in order (a zero term
/// changes nothing: sums never hold -0). Four rows at a time, so each column row is read once
/// per four.
fn matrix_product(matrix: &[f32], columns: &[f32], out: &mut [f32], targets: usize, depth: usize, pixels: usize) {
    out.fill(0.0);
    let mut blocks = out.chunks_exact_mut(4 * pixels);
    for (b, block) in (&mut blocks).enumerate() {
        let (r0, rest) = block.split_at_mut(pixels);
        let (r1, rest) = rest.split_at_mut(pixels);
        let (r2, r3) = rest.split_at_mut(pixels);
        for d in 0..depth {
            let m = |r: usize| matrix[(4 * b + r) * depth + d];
            let (m0, m1, m2, m3) = (m(0), m(1), m(2), m(3));
            let column = &columns[d * pixels..][..pixels];
            for i in 0..pixels {
                let c = column[i];
                r0[i] += m0 * c;
                r1[i] += m1 * c;
                r2[i] += m2 * c;
                r3[i] += m3 * c;
            }
        }
    }
    let done = targets / 4 * 4;
    for (t, row) in blocks.into_remainder().chunks_exact_mut(pixels).enumerate() {
        for d in 0..depth {
            let m = matrix[(done + t) * depth + d];
            for (o, c) in row.iter_mut().zip(&columns[d * pixels..][..pixels]) {
                *o += m * c;
            }
        }
    }
}
