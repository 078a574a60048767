//! `shaders/dense.wgsl`: linear layers and global average pooling with their input gradients:
//! the parameter struct, the op constructors and the CPU reference.

use super::{Kernel, KernelParams, Op, PARAMS_BYTES, ix, u};

kernel_params! {
    /// `shaders/dense.wgsl`: linear layers (weights `[nin, nout]`) and global average pooling,
    /// with their input gradients (then `input` is the output's gradient).
    DenseParams {
        input: u32,
        weights: u32,
        output: u32,
        /// Images (linear) or pooled rows (mean pool: images x channels).
        rows: u32,
        nin: u32,
        nout: u32,
        bias: u32,
        has_bias: u32,
        /// Values averaged per row (mean pool).
        hw: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
        pad3: u32,
        pad4: u32,
        pad5: u32,
        pad6: u32,
    }
}

impl Op {
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
}

/// The CPU reference of this family's kernels: the same arithmetic as the WGSL.
pub(super) fn run(op: &Op, w: &[f32], a: &mut [f32]) {
    let threads = op.threads as usize;
    match op.kernel {
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
        other => unreachable!("{other:?} is not a dense kernel"),
    }
}
