//! Engine speed: ms per forward pass and per PGD step (forward + backward + update) per image,
//! for the shipped models and a random PreActResNet-18 Swish, on our WGSL engine (the machine's
//! GPU adapter, lavapipe here, with each forward-convolution kernel), on its CPU reference, and
//! on Burn's flex CPU backend for scale.
//! `cargo bench -p atd-tests --bench engine [-- --quick]`. With `--features wgpu` (a ~20-minute
//! build of Burn's wgpu backend) it also times Burn on wgpu's default adapter, the one our engine
//! uses, and prints our speed-up over it.

use std::time::Instant;

use atd_core::card::ExtractorSpec;
use atd_gpu::gpu::AdapterSummary;
use atd_gpu::{AttackOptions, AttackSpec, ConvStrategy, Direction, Engine};
use atd_tests::{card, images, random_weights};
use atd_train::model::{tensor_from, to_vec};
use atd_train::pgd::{PgdConfig, pgd};
use atd_train::{Detector, Model};
use burn::tensor::Device;

fn time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up (shader compilation, allocation)
    let started = Instant::now();
    for _ in 0..repeats {
        f();
    }
    started.elapsed().as_secs_f64() * 1000.0 / repeats as f64
}

/// Our engine on the GPU adapter with one forward-convolution kernel: ms per forward and per
/// PGD step (whole batch), and the adapter.
fn engine_times(
    bytes: &[u8],
    detector: Detector,
    x: &[f32],
    batch: usize,
    steps: usize,
    conv: ConvStrategy,
) -> (f64, f64, AdapterSummary) {
    let mut gpu = pollster::block_on(Engine::gpu_with_conv(bytes, detector, batch, conv)).expect("a GPU adapter");
    let options = AttackOptions::new(AttackSpec::new(8.0 / 255.0, steps), Direction::Out);
    let forward = time(3, || {
        pollster::block_on(gpu.score(x)).unwrap();
    });
    let attack = time(1, || {
        pollster::block_on(gpu.attack(x, &options, |_, _| true)).unwrap();
    });
    (forward, attack / (steps + 1) as f64, gpu.adapter().expect("on the GPU").clone())
}

fn bench(name: &str, bytes: &[u8], detector: Detector, batch: usize, steps: usize) {
    let x = images(batch, 3);
    let per = |ms: f64| ms / batch as f64;
    let (direct_fwd, direct_step, adapter) = engine_times(bytes, detector, &x, batch, steps, ConvStrategy::Direct);
    let (tiled_fwd, tiled_step, _) = engine_times(bytes, detector, &x, batch, steps, ConvStrategy::Tiled);
    let (our_fwd, our_step) = match ConvStrategy::for_adapter(adapter.software) {
        ConvStrategy::Direct => (direct_fwd, direct_step),
        ConvStrategy::Tiled => (tiled_fwd, tiled_step),
    };
    let mut cpu = Engine::cpu(bytes, detector, batch).unwrap();
    let cpu_fwd = time(1, || {
        pollster::block_on(cpu.score(&x)).unwrap();
    });
    let options = AttackOptions::new(AttackSpec::new(8.0 / 255.0, steps), Direction::Out);
    let cpu_step = time(1, || {
        pollster::block_on(cpu.attack(&x, &options, |_, _| true)).unwrap();
    }) / (steps + 1) as f64;
    let (burn_fwd, burn_step) = burn_times(bytes, detector, &x, batch, steps, &Device::flex());
    println!(
        "{name:<22} {detector:?} batch {batch:>2} | WGSL on {}: direct conv forward {:7.2} ms/img, PGD step {:7.2} ms/img; tiled conv forward {:7.2} ms/img, PGD step {:7.2} ms/img | WGSL CPU reference: forward {:7.2} ms/img, PGD step {:7.2} ms/img | Burn flex: forward {:6.2} ms/img, PGD step {:6.2} ms/img{}",
        adapter.name,
        per(direct_fwd),
        per(direct_step),
        per(tiled_fwd),
        per(tiled_step),
        per(cpu_fwd),
        per(cpu_step),
        per(burn_fwd),
        per(burn_step / steps as f64),
        versus_burn_wgpu(bytes, detector, &x, batch, steps, our_fwd, our_step),
    );
}

/// Burn on wgpu's default adapter (the one our engine takes) and our speed-up over it.
#[cfg(feature = "wgpu")]
fn versus_burn_wgpu(
    bytes: &[u8],
    detector: Detector,
    x: &[f32],
    batch: usize,
    steps: usize,
    our_fwd: f64,
    our_step: f64,
) -> String {
    let (fwd, pgd_ms) =
        burn_times(bytes, detector, x, batch, steps, &Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
    let step = pgd_ms / steps as f64;
    format!(
        " | Burn wgpu: forward {:7.2} ms/img, PGD step {:7.2} ms/img | ours (the adapter's kernel) vs Burn wgpu: {:.2}x forward, {:.2}x PGD step",
        fwd / batch as f64,
        step / batch as f64,
        fwd / our_fwd,
        step / our_step,
    )
}

#[cfg(not(feature = "wgpu"))]
fn versus_burn_wgpu(_: &[u8], _: Detector, _: &[f32], _: usize, _: usize, _: f64, _: f64) -> String {
    String::new()
}

/// Burn's ms per forward and per `steps`-step PGD (whole batch) on `device`, reading the result
/// back so that asynchronous backends are timed to completion.
fn burn_times(bytes: &[u8], detector: Detector, x: &[f32], batch: usize, steps: usize, device: &Device) -> (f64, f64) {
    let model = Model::from_bytes(bytes, device).unwrap().valid();
    let input = tensor_from(x.to_vec(), [batch, 3, 32, 32], device);
    let forward = time(3, || {
        to_vec(model.score(detector, input.clone()));
    });
    let down = |x: burn::tensor::Tensor<4>| model.score_logit(detector, x).neg();
    let step = time(1, || {
        to_vec(pgd(&down, &input, &PgdConfig::new(8.0 / 255.0, steps), |_, _| {}).adversarial);
    });
    (forward, step)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/models");
    for file in ["atd.safetensors", "standard.safetensors"] {
        let Ok(bytes) = std::fs::read(models.join(file)) else { continue };
        let detector = if file.starts_with("atd") { Detector::Atd } else { Detector::Msp };
        for batch in if quick { vec![1] } else { vec![1, 16] } {
            bench(file, &bytes, detector, batch, 10);
        }
    }
    let preact = random_weights(card(ExtractorSpec::preact_resnet18_swish()), 1);
    bench("PreActResNet-18 Swish", &preact, Detector::Atd, 1, if quick { 1 } else { 3 });
}
