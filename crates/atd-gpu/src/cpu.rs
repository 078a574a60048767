//! The CPU reference: every kernel of `shaders/` in plain Rust, thread by thread, reading the
//! same parameters. It is what kernel tests compare the GPU against, and the engine's fallback
//! where WebGPU is missing.

use crate::params::{AttackParams, ConvParams, DenseParams, ElementwiseParams};
use crate::plan::{ACT_LEAKY, ACT_RELU, ACT_SWISH, Kernel, Op};

fn activate(z: f32, act: u32, slope: f32) -> f32 {
    match act {
        ACT_RELU => z.max(0.0),
        ACT_SWISH => z / (1.0 + (-z).exp()),
        ACT_LEAKY => {
            if z > 0.0 {
                z
            } else {
                z * slope
            }
        }
        _ => z,
    }
}

fn activate_grad(z: f32, act: u32, slope: f32) -> f32 {
    match act {
        ACT_RELU => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        ACT_SWISH => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 + z * (1.0 - s))
        }
        ACT_LEAKY => {
            if z > 0.0 {
                1.0
            } else {
                slope
            }
        }
        _ => 1.0,
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

/// An offset or size parameter as an index.
fn ix(v: u32) -> usize {
    v as usize
}

/// Run one op on the CPU: the same arithmetic as its WGSL kernel.
pub fn run(op: &Op, w: &[f32], a: &mut [f32]) {
    let threads = op.threads as usize;
    match op.kernel {
        Kernel::AffineAct => {
            let p: ElementwiseParams = op.params();
            let (x, out, scale, shift, channels, hw) =
                (ix(p.x), ix(p.out), ix(p.scale), ix(p.shift), ix(p.channels), ix(p.hw));
            for i in 0..threads {
                let ch = (i / hw) % channels;
                a[out + i] = activate(a[x + i] * w[scale + ch] + w[shift + ch], p.act, p.slope);
            }
        }
        Kernel::AffineActBackward => {
            let p: ElementwiseParams = op.params();
            let (x, dy, dx, scale, shift, channels, hw) =
                (ix(p.x), ix(p.y), ix(p.out), ix(p.scale), ix(p.shift), ix(p.channels), ix(p.hw));
            for i in 0..threads {
                let ch = (i / hw) % channels;
                let s = w[scale + ch];
                let z = a[x + i] * s + w[shift + ch];
                let mut g = a[dy + i] * activate_grad(z, p.act, p.slope) * s;
                if p.accumulate != 0 {
                    g += a[dx + i];
                }
                a[dx + i] = g;
            }
        }
        Kernel::Add => {
            let p: ElementwiseParams = op.params();
            for i in 0..threads {
                a[ix(p.out) + i] = a[ix(p.x) + i] + a[ix(p.y) + i];
            }
        }
        Kernel::Copy => {
            let p: ElementwiseParams = op.params();
            for i in 0..threads {
                a[ix(p.out) + i] = a[ix(p.x) + i];
            }
        }
        Kernel::ConvForward | Kernel::ConvForwardTiled | Kernel::ConvBackwardInput => conv(op, w, a),
        Kernel::LinearForward => {
            let p: DenseParams = op.params();
            let (x, wt, y, nin, nout, bias) =
                (ix(p.input), ix(p.weights), ix(p.output), ix(p.nin), ix(p.nout), ix(p.bias));
            for i in 0..threads {
                let (o, n) = (i % nout, i / nout);
                let mut sum = 0.0f32;
                for k in 0..nin {
                    sum += a[x + n * nin + k] * w[wt + k * nout + o];
                }
                if p.has_bias != 0 {
                    sum += w[bias + o];
                }
                a[y + i] = sum;
            }
        }
        Kernel::LinearBackwardInput => {
            let p: DenseParams = op.params();
            let (dy, wt, dx, nin, nout) = (ix(p.input), ix(p.weights), ix(p.output), ix(p.nin), ix(p.nout));
            for i in 0..threads {
                let (k, n) = (i % nin, i / nin);
                let mut sum = 0.0f32;
                for o in 0..nout {
                    sum += a[dy + n * nout + o] * w[wt + k * nout + o];
                }
                a[dx + i] = sum;
            }
        }
        Kernel::MeanPool => {
            let p: DenseParams = op.params();
            let (x, y, hw) = (ix(p.input), ix(p.output), ix(p.hw));
            for m in 0..threads {
                let mut sum = 0.0f32;
                for q in 0..hw {
                    sum += a[x + m * hw + q];
                }
                a[y + m] = sum / hw as f32;
            }
        }
        Kernel::MeanPoolBackward => {
            let p: DenseParams = op.params();
            let (dy, dx, hw) = (ix(p.input), ix(p.output), ix(p.hw));
            for i in 0..threads {
                a[dx + i] = a[dy + i / hw] / hw as f32;
            }
        }
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
    }
}

/// Convolution forward, and its backward to the input, as a matrix product over patches
/// (im2col): each output is the sum over (channel, ky, kx) in the order the WGSL kernels add
/// them, so the results are the same to the bit, but the inner loops run over contiguous rows
/// of pixels and vectorise.
fn conv(op: &Op, w: &[f32], a: &mut [f32]) {
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
