//! The CPU reference: every kernel of `shaders/` in plain Rust, thread by thread, reading the
//! same parameters. It is what kernel tests compare the GPU against, and the engine's fallback
//! where WebGPU is missing.

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

/// Run one op on the CPU: the same arithmetic as its WGSL kernel.
pub fn run(op: &Op, w: &[f32], a: &mut [f32]) {
    let p = |i: usize| op.params[i] as usize;
    let pf = |i: usize| f32::from_bits(op.params[i]);
    let threads = op.threads as usize;
    match op.kernel {
        Kernel::AffineAct => {
            let (x, y, scale, shift, channels, hw, act, slope) = (p(0), p(1), p(2), p(3), p(4), p(5), op.params[7], pf(8));
            for i in 0..threads {
                let ch = (i / hw) % channels;
                a[y + i] = activate(a[x + i] * w[scale + ch] + w[shift + ch], act, slope);
            }
        }
        Kernel::AffineActBackward => {
            let (x, dy, dx, scale, channels, hw, act, slope, shift, accumulate) =
                (p(0), p(1), p(2), p(3), p(4), p(5), op.params[7], pf(8), p(9), p(10) != 0);
            for i in 0..threads {
                let ch = (i / hw) % channels;
                let s = w[scale + ch];
                let z = a[x + i] * s + w[shift + ch];
                let mut g = a[dy + i] * activate_grad(z, act, slope) * s;
                if accumulate {
                    g += a[dx + i];
                }
                a[dx + i] = g;
            }
        }
        Kernel::Add => {
            for i in 0..threads {
                a[p(2) + i] = a[p(0) + i] + a[p(1) + i];
            }
        }
        Kernel::Copy => {
            for i in 0..threads {
                a[p(1) + i] = a[p(0) + i];
            }
        }
        Kernel::ConvForward | Kernel::ConvForwardTiled | Kernel::ConvBackwardInput => conv(op, w, a),
        Kernel::LinearForward => {
            let (x, wt, y, nin, nout, bias, has_bias) = (p(0), p(1), p(2), p(4), p(5), p(6), p(7) != 0);
            for i in 0..threads {
                let (o, n) = (i % nout, i / nout);
                let mut sum = 0.0f32;
                for k in 0..nin {
                    sum += a[x + n * nin + k] * w[wt + k * nout + o];
                }
                if has_bias {
                    sum += w[bias + o];
                }
                a[y + i] = sum;
            }
        }
        Kernel::LinearBackwardInput => {
            let (dy, wt, dx, nin, nout) = (p(0), p(1), p(2), p(4), p(5));
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
            let (x, y, hw) = (p(0), p(1), p(3));
            for m in 0..threads {
                let mut sum = 0.0f32;
                for q in 0..hw {
                    sum += a[x + m * hw + q];
                }
                a[y + m] = sum / hw as f32;
            }
        }
        Kernel::MeanPoolBackward => {
            let (dy, dx, hw) = (p(0), p(1), p(3));
            for i in 0..threads {
                a[dx + i] = a[dy + i / hw] / hw as f32;
            }
        }
        Kernel::Objective => {
            let (logits, objective, grad, classes, msp, sgn) = (p(0), p(1), p(2), p(4), p(5) != 0, pf(6));
            for n in 0..threads {
                let base = logits + n * classes;
                if !msp {
                    a[objective + n] = a[base];
                    a[grad + n] = sgn;
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
                    a[grad + n * classes + c] = sgn * (if c == best { 1.0 } else { 0.0 } - prob);
                }
            }
        }
        Kernel::PgdInit => {
            let (x0, x, seed, eps) = (p(0), p(1), op.params[3], pf(4));
            for i in 0..threads {
                a[x + i] = (a[x0 + i] + eps * atd_core::noise::noise(seed, i as u32)).clamp(0.0, 1.0);
            }
        }
        Kernel::PgdStep => {
            let (x0, x, g, eps, alpha) = (p(0), p(1), p(2), pf(4), pf(5));
            for i in 0..threads {
                let clean = a[x0 + i];
                let stepped = a[x + i] + alpha * sign(a[g + i]);
                a[x + i] = stepped.clamp(clean - eps, clean + eps).clamp(0.0, 1.0);
            }
        }
        Kernel::Record => {
            for n in 0..threads {
                a[p(1) + n] = a[p(0) + n];
            }
        }
        Kernel::KeepBest => {
            let (x, objective, best_x, best_objective, per, first, sgn) = (p(0), p(1), p(2), p(3), p(5), p(6) != 0, pf(7));
            for n in 0..threads {
                // Written as in WGSL: a NaN objective never replaces the best.
                if !first && !(sgn * a[objective + n] > sgn * a[best_objective + n]) {
                    continue;
                }
                a[best_objective + n] = a[objective + n];
                a.copy_within(x + n * per..x + (n + 1) * per, best_x + n * per);
            }
        }
    }
}

fn conv(op: &Op, w: &[f32], a: &mut [f32]) {
    let p = |i: usize| op.params[i] as usize;
    let (from, wt, to) = (p(0), p(1), p(2));
    let (cin, cout, hin, win, hout, wout, k, stride) = (p(4), p(5), p(6), p(7), p(8), p(9), p(10), p(11));
    let (pad_top, pad_left, accumulate) = (p(12) as isize, p(13) as isize, p(14) != 0);
    // One value per output (the GPU groups four channels per thread; the sums are the same).
    let batch = p(3);
    let forward = op.kernel != Kernel::ConvBackwardInput;
    let outputs = if forward { batch * cout * hout * wout } else { batch * cin * hin * win };
    for i in 0..outputs {
        let mut sum = 0.0f32;
        if forward {
            let (ox, oy, co, n) = (i % wout, (i / wout) % hout, (i / (wout * hout)) % cout, i / (wout * hout * cout));
            let (y0, x0) = ((oy * stride) as isize - pad_top, (ox * stride) as isize - pad_left);
            for ci in 0..cin {
                let (xb, wb) = (from + (n * cin + ci) * hin * win, wt + (co * cin + ci) * k * k);
                for ky in 0..k {
                    let y = y0 + ky as isize;
                    if y < 0 || y >= hin as isize {
                        continue;
                    }
                    for kx in 0..k {
                        let x = x0 + kx as isize;
                        if x < 0 || x >= win as isize {
                            continue;
                        }
                        sum += a[xb + y as usize * win + x as usize] * w[wb + ky * k + kx];
                    }
                }
            }
        } else {
            let (x, y, ci, n) = (i % win, (i / win) % hin, (i / (win * hin)) % cin, i / (win * hin * cin));
            let (ty, tx) = (y as isize + pad_top, x as isize + pad_left);
            for co in 0..cout {
                let (gb, wb) = (from + (n * cout + co) * hout * wout, wt + (co * cin + ci) * k * k);
                for ky in 0..k {
                    let sy = ty - ky as isize;
                    if sy < 0 || sy % stride as isize != 0 || sy as usize / stride >= hout {
                        continue;
                    }
                    for kx in 0..k {
                        let sx = tx - kx as isize;
                        if sx < 0 || sx % stride as isize != 0 || sx as usize / stride >= wout {
                            continue;
                        }
                        sum += a[gb + (sy as usize / stride) * wout + sx as usize / stride] * w[wb + ky * k + kx];
                    }
                }
            }
        }
        if accumulate {
            sum += a[to + i];
        }
        a[to + i] = sum;
    }
}
