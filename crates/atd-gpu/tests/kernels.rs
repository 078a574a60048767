//! Each kernel on the GPU (lavapipe in CI) equals the CPU reference bit for bit on dyadic
//! inputs (small multiples of 1/16: every f32 product and sum is exact, so the order of the
//! additions cannot matter). Swish and softmax use exp, so they are compared with a tolerance.

use atd_core::card::Padding;
use atd_gpu::gpu::Gpu;
use atd_gpu::kernels::{ACT_LEAKY, ACT_NONE, ACT_RELU, ACT_SWISH, ConvGeometry, Kernel, Op, run_cpu};

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).expect("a GPU adapter: install mesa-vulkan-drivers for lavapipe")
}

/// Dyadic values in [-1, 1): k/16.
fn dyadic(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32).map(|i| (atd_core::noise::pcg(i ^ atd_core::noise::pcg(seed)) % 32) as f32 / 16.0 - 1.0).collect()
}

/// Run `op` on both engines from the same weights and arena; return both arenas.
fn both(gpu: &Gpu, op: Op, weights: &[f32], arena: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut cpu_arena = arena.to_vec();
    run_cpu(&op, weights, &mut cpu_arena);
    let mut resident = gpu.upload(weights, arena.len()).unwrap();
    let out = pollster::block_on(gpu.run(&mut resident, &[op], &[0], &[(0, arena)], &[(0, arena.len())])).unwrap();
    (cpu_arena, out.into_iter().next().unwrap())
}

fn assert_bit_exact(name: &str, cpu: &[f32], gpu: &[f32]) {
    let mismatches: Vec<usize> = (0..cpu.len()).filter(|&i| cpu[i].to_bits() != gpu[i].to_bits()).collect();
    assert!(
        mismatches.is_empty(),
        "{name}: {} of {} values differ, first at {}: cpu {} gpu {}",
        mismatches.len(),
        cpu.len(),
        mismatches[0],
        cpu[mismatches[0]],
        gpu[mismatches[0]]
    );
}

fn assert_close(name: &str, cpu: &[f32], gpu: &[f32], tol: f32) {
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + a.abs()), "{name}: value {i}: cpu {a} gpu {b}");
    }
}

/// Every convolution kernel on two sizes: 5 -> 6 channels on 8x8, and 19 -> 20 channels on
/// 10x10, which leaves the tiled kernel partial tiles (10x10 and 5x5 outputs), three rounds of
/// staged input channels (8 + 8 + 3) and two channel blocks (16 + 4).
#[test]
fn convolutions_match_the_cpu_bit_for_bit() {
    let gpu = gpu();
    let batch = 2;
    for (cin, cout, size) in [(5, 6, 8), (19, 20, 10)] {
        for (k, stride, padding) in [
            (3, 1, Padding::Symmetric),
            (3, 2, Padding::Symmetric),
            (3, 2, Padding::Same),
            (1, 2, Padding::Same),
            (1, 1, Padding::Symmetric),
        ] {
            let g = ConvGeometry::new(cin, cout, size, k, stride, padding);
            let (n_in, n_out) = (batch * g.cin * g.hin * g.win, batch * g.cout * g.hout * g.wout);
            let weights = dyadic(g.cout * g.cin * k * k + 3, 1);
            let arena = dyadic(n_in + n_out + n_in, 2);
            for accumulate in [false, true] {
                for op in [
                    Op::conv(Kernel::ConvForward, 0, 3, n_in, &g, batch, accumulate),
                    Op::conv(Kernel::ConvForwardTiled, 0, 3, n_in, &g, batch, accumulate),
                    Op::conv(Kernel::ConvBackwardInput, n_in, 3, n_in + n_out, &g, batch, accumulate),
                ] {
                    let (c, gp) = both(&gpu, op, &weights, &arena);
                    assert_bit_exact(
                        &format!("{:?} {cin}->{cout} k{k} s{stride} {padding:?} accumulate {accumulate}", op.kernel),
                        &c,
                        &gp,
                    );
                }
            }
        }
    }
}

#[test]
fn conv_backward_is_the_adjoint_of_conv_forward() {
    // <conv(x), y> == <x, conv_backward(y)> exactly on dyadic data: the CPU reference's two
    // directions are consistent (so GPU == CPU means GPU gradients are right too).
    for (k, stride, padding) in
        [(3, 1, Padding::Symmetric), (3, 2, Padding::Same), (3, 2, Padding::Symmetric), (1, 2, Padding::Same)]
    {
        let g = ConvGeometry::new(3, 4, 8, k, stride, padding);
        let (n_in, n_out) = (g.cin * g.hin * g.win, g.cout * g.hout * g.wout);
        let weights = dyadic(g.cout * g.cin * k * k, 3);
        let mut a = dyadic(n_in + n_out, 4);
        a.extend(vec![0.0; n_out + n_in]);
        run_cpu(&Op::conv(Kernel::ConvForward, 0, 0, n_in + n_out, &g, 1, false), &weights, &mut a);
        run_cpu(&Op::conv(Kernel::ConvBackwardInput, n_in, 0, n_in + 2 * n_out, &g, 1, false), &weights, &mut a);
        let lhs: f64 = (0..n_out).map(|i| a[n_in + n_out + i] as f64 * a[n_in + i] as f64).sum();
        let rhs: f64 = (0..n_in).map(|i| a[i] as f64 * a[n_in + 2 * n_out + i] as f64).sum();
        assert_eq!(lhs, rhs, "k{k} s{stride} {padding:?}");
    }
}

#[test]
fn elementwise_dense_and_attack_kernels_match_the_cpu() {
    let gpu = gpu();
    let (c, hw, batch) = (4, 16, 2);
    let n = c * hw * batch;
    let weights = dyadic(64, 5);
    let mut arena = dyadic(8 * n, 6);
    // Objectives (at n) and best objectives (at 3n) such that "up" keeps sample 0 only and
    // "down" sample 1 only.
    arena[n..n + 2].copy_from_slice(&[0.5, -0.5]);
    arena[3 * n..3 * n + 2].copy_from_slice(&[0.0, 0.0]);
    let mut exact = vec![
        ("affine none", Op::affine_act(0, n, 0, 8, c, hw, n, ACT_NONE, 0.0)),
        ("affine relu", Op::affine_act(0, n, 0, 8, c, hw, n, ACT_RELU, 0.0)),
        ("affine leaky", Op::affine_act(0, n, 0, 8, c, hw, n, ACT_LEAKY, 0.25)),
        ("add", Op::add(0, n, 2 * n, n)),
        ("copy", Op::copy(0, 3 * n, n)),
        ("linear", Op::linear(0, 0, 2 * n, batch, 8, 4, None)),
        ("linear bias", Op::linear(0, 0, 2 * n, batch, 8, 4, Some(40))),
        ("linear backward", Op::linear_backward(0, 0, 2 * n, batch, 8, 4)),
        ("mean pool", Op::mean_pool(0, 2 * n, batch * c, hw)),
        ("mean pool backward", Op::mean_pool_backward(0, 2 * n, batch * c, hw)),
        ("objective logit", Op::objective(0, 2 * n, 3 * n, batch, 1, false, -1.0)),
        ("pgd init", Op::pgd_init(0, n, n, 42, 0.125)),
        ("pgd step", Op::pgd_step(0, n, 2 * n, n, 0.125, 0.0625)),
        ("record", Op::record(0, 5 * n, batch)),
        ("keep best (first)", Op::keep_best(0, n, 2 * n, 3 * n, batch, 16, true, 1.0)),
        ("keep best (up)", Op::keep_best(0, n, 2 * n, 3 * n, batch, 16, false, 1.0)),
        ("keep best (down)", Op::keep_best(0, n, 2 * n, 3 * n, batch, 16, false, -1.0)),
    ];
    for act in [ACT_NONE, ACT_RELU, ACT_LEAKY] {
        for accumulate in [false, true] {
            exact
                .push(("affine backward", Op::affine_act_backward(0, n, 2 * n, 0, 8, c, hw, n, act, 0.25, accumulate)));
        }
    }
    for (name, op) in exact {
        let (cpu, gp) = both(&gpu, op, &weights, &arena);
        assert_bit_exact(name, &cpu, &gp);
        assert!(cpu != arena, "{name} changed nothing");
    }
    for (name, op) in [
        ("affine swish", Op::affine_act(0, n, 0, 8, c, hw, n, ACT_SWISH, 0.0)),
        ("affine backward swish", Op::affine_act_backward(0, n, 2 * n, 0, 8, c, hw, n, ACT_SWISH, 0.0, false)),
        ("objective msp", Op::objective(0, 2 * n, 3 * n, batch, 10, true, 1.0)),
    ] {
        let (cpu, gp) = both(&gpu, op, &weights, &arena);
        assert_close(name, &cpu, &gp, 1e-5);
    }
}

#[test]
fn pgd_kernels_respect_the_eps_ball_and_the_box() {
    let gpu = gpu();
    let n = 4096;
    let clean: Vec<f32> = (0..n).map(|i| [0.0, 1.0, 0.5, 0.03125][i % 4]).collect();
    let mut arena = clean.clone();
    arena.extend(vec![0.0; n]);
    arena.extend(dyadic(n, 9));
    let eps = 0.0625;
    let (_, started) = both(&gpu, Op::pgd_init(0, n, n, 3, eps), &[0.0], &arena);
    let (_, stepped) = both(&gpu, Op::pgd_step(0, n, 2 * n, n, eps, 0.03125), &[0.0], &started);
    for i in 0..n {
        for (what, x) in [("start", started[n + i]), ("step", stepped[n + i])] {
            assert!((0.0..=1.0).contains(&x) && (x - clean[i]).abs() <= eps, "{what} {i}: {x} from {}", clean[i]);
        }
    }
    assert!((0..n).any(|i| started[n + i] != clean[i]), "the random start moved nothing");
}
