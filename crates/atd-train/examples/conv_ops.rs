//! Each convolution of the small preset alone on the CPU, Burn's flex op beside atd-train's own
//! (`atd_train::conv`), to show which op keeps a training step slow:
//! `cargo run --release -p atd-train --example conv_ops -- [batch] [iterations]`.
//! One JSON line per layer shape and implementation ("flex" or "atd"): ms per call of the
//! forward, of the input gradient (what PGD needs; flex runs it as a transposed convolution) and
//! of the weight gradient (what training adds; flex runs it as a convolution with the batch as
//! channels), each called directly as the autodiff backward calls it.
//! pkg-scripts/bench_peers.py --ops times the same calls in PyTorch.

use atd_train::conv::CpuConv;
use atd_train::model::to_vec;
use atd_train::rng::Rng;
use burn::backend::Dispatch;
use burn::tensor::module::{conv_transpose2d, conv2d, conv2d_weight_backward};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Tensor, TensorData};

/// (input channels, output channels, input size, kernel, stride, padding) of every convolution
/// in the small preset (widths 16-32-64-128, one block per stage, 1x1 shortcuts).
const SMALL_PRESET: [(usize, usize, usize, usize, usize, usize); 11] = [
    (3, 16, 32, 3, 1, 1),
    (16, 16, 32, 3, 1, 1),
    (16, 32, 32, 3, 2, 1),
    (32, 32, 16, 3, 1, 1),
    (16, 32, 32, 1, 2, 0),
    (32, 64, 16, 3, 2, 1),
    (64, 64, 8, 3, 1, 1),
    (32, 64, 16, 1, 2, 0),
    (64, 128, 8, 3, 2, 1),
    (128, 128, 4, 3, 1, 1),
    (64, 128, 8, 1, 2, 0),
];

fn random(shape: [usize; 4], rng: &mut Rng, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = (0..shape.iter().product()).map(|_| rng.uniform() - 0.5).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Milliseconds per call of `f` over `iterations` calls after one warm-up.
fn ms_per_call(iterations: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / iterations as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map_or(128, |a| a.parse().expect("batch: a number"));
    let iterations: usize = args.next().map_or(20, |a| a.parse().expect("iterations: a number"));
    let device = Device::flex();
    let mut rng = Rng::new(0);
    for (cin, cout, size, kernel, stride, padding) in SMALL_PRESET {
        let options = || ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
        let x = random([batch, cin, size, size], &mut rng, &device);
        let w = random([cout, cin, kernel, kernel], &mut rng, &device);
        let out = size.div_ceil(stride);
        let upstream = random([batch, cout, out, out], &mut rng, &device);
        let dispatch = |t: &Tensor<4>| t.clone().into_dispatch();
        let ours = |op: &dyn Fn() -> burn::backend::tensor::FloatTensor<Dispatch>| {
            let _ = to_vec(Tensor::<4>::from_dispatch(op()).sum());
        };
        let forward = ms_per_call(iterations, || {
            let _ = to_vec(conv2d(x.clone(), w.clone(), None, options()).sum());
        });
        let forward_ours = ms_per_call(iterations, || {
            ours(&|| <Dispatch as CpuConv>::cpu_conv2d(dispatch(&x), dispatch(&w), options()))
        });
        let input_gradient_ours = ms_per_call(iterations, || {
            ours(&|| {
                <Dispatch as CpuConv>::cpu_conv2d_x_backward(dispatch(&x), dispatch(&w), dispatch(&upstream), options())
            })
        });
        let weight_gradient_ours = ms_per_call(iterations, || {
            ours(&|| {
                <Dispatch as CpuConv>::cpu_conv2d_weight_backward(
                    dispatch(&x),
                    dispatch(&w),
                    dispatch(&upstream),
                    options(),
                )
            })
        });
        // The transposed convolution Burn's conv2d backward runs, with its output padding.
        let padding_out = size - ((out - 1) * stride + kernel - 2 * padding);
        let transpose = ConvTransposeOptions::new([stride, stride], [padding, padding], [padding_out; 2], [1, 1], 1);
        let input_gradient = ms_per_call(iterations, || {
            let _ = to_vec(conv_transpose2d(upstream.clone(), w.clone(), None, transpose.clone()).sum());
        });
        let weight_gradient = ms_per_call(iterations, || {
            let _ = to_vec(conv2d_weight_backward(x.clone(), w.clone(), upstream.clone(), options()).sum());
        });
        let layer = format!("{cin}->{cout} {size}x{size} k{kernel} s{stride}");
        for (implementation, times) in [
            ("flex", [forward, input_gradient, weight_gradient]),
            ("atd", [forward_ours, input_gradient_ours, weight_gradient_ours]),
        ] {
            let [forward, input_gradient, weight_gradient] = times;
            let line = serde_json::json!({
                "implementation": implementation, "layer": layer, "batch": batch,
                "forward": forward, "input_gradient": input_gradient, "weight_gradient": weight_gradient,
            });
            println!("{line}");
        }
    }
}
