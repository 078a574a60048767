//! `shaders/elementwise.wgsl`: per-channel affine + activation (folded BatchNorm) and its
//! backward, sums and copies: the parameter struct, the op constructors and the CPU reference.

use super::{ACT_LEAKY, ACT_RELU, ACT_SWISH, Kernel, KernelParams, Op, PARAMS_BYTES, ix, u};

kernel_params! {
    /// `shaders/elementwise.wgsl`: per-channel affine + activation, its backward, add, copy.
    /// `x` and `y` are inputs and `out` the output in the arena; `scale` and `shift` are
    /// per-channel vectors in the weights.
    ElementwiseParams {
        /// affine_act and its backward: the pre-affine input; add: the first term; copy: the source.
        x: u32,
        /// affine_act_backward: d out; add: the second term.
        y: u32,
        out: u32,
        scale: u32,
        shift: u32,
        channels: u32,
        /// Values per channel and image.
        hw: u32,
        /// Values processed.
        n: u32,
        /// Activation code (`ACT_*`).
        act: u32,
        /// LeakyReLU's negative slope.
        slope: f32,
        /// The backward adds to `out` instead of overwriting it.
        accumulate: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
        pad3: u32,
        pad4: u32,
    }
}

impl Op {
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
}

/// The CPU reference of this family's kernels: the same arithmetic as the WGSL.
pub(super) fn run(op: &Op, w: &[f32], a: &mut [f32]) {
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
        other => unreachable!("{other:?} is not an elementwise kernel"),
    }
}

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
