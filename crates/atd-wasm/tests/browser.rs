//! In headless Chromium (WebGPU on SwiftShader): the engine's WebGPU kernels equal its CPU
//! reference bit for bit on dyadic data, exactly as natively on lavapipe; on the shipped
//! baseline model the WebGPU scores and gradients equal the CPU reference's (which is the same
//! Rust code as natively), and an attack moves the score the requested way inside the eps-ball;
//! the page learns which detectors a file holds, and a file without one is refused.
#![cfg(target_arch = "wasm32")]

use atd_core::card::Padding;
use atd_gpu::gpu::Gpu;
use atd_gpu::kernels::{ConvGeometry, Kernel, Op, run_cpu};
use atd_gpu::{AttackOptions, AttackSpec, Detector, Direction, Engine};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const MODEL: &[u8] = include_bytes!("../../../web/models/standard.safetensors");

fn dyadic(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32).map(|i| (atd_core::noise::pcg(i ^ atd_core::noise::pcg(seed)) % 32) as f32 / 16.0 - 1.0).collect()
}

#[wasm_bindgen_test]
async fn webgpu_convolutions_equal_the_cpu_reference_bit_for_bit() {
    let gpu = Gpu::new().await.expect("a WebGPU adapter (run Chromium with --enable-unsafe-webgpu)");
    for (k, stride, padding) in [(3, 1, Padding::Symmetric), (3, 2, Padding::Same), (1, 2, Padding::Same)] {
        let g = ConvGeometry::new(5, 6, 8, k, stride, padding);
        let (n_in, n_out) = (2 * g.cin * g.hin * g.win, 2 * g.cout * g.hout * g.wout);
        let weights = dyadic(g.cout * g.cin * k * k, 1);
        let arena = dyadic(n_in + n_out + n_in, 2);
        for op in [
            Op::conv(Kernel::ConvForward, 0, 0, n_in, &g, 2, false),
            Op::conv(Kernel::ConvForwardTiled, 0, 0, n_in, &g, 2, true),
            Op::conv(Kernel::ConvBackwardInput, n_in, 0, n_in + n_out, &g, 2, true),
        ] {
            let mut cpu = arena.clone();
            run_cpu(&op, &weights, &mut cpu);
            let mut resident = gpu.upload(&weights, arena.len()).unwrap();
            let out = gpu.run(&mut resident, &[op], &[0], &[(0, &arena)], &[(0, arena.len())]).await.unwrap().remove(0);
            let same = cpu.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{:?} k{k} s{stride}: WebGPU differs from the CPU reference", op.kernel);
        }
    }
}

#[wasm_bindgen_test]
async fn webgpu_engine_equals_the_cpu_reference_on_the_shipped_model() {
    let x: Vec<f32> = (0..3072).map(|i| (atd_core::noise::noise(9, i) + 1.0) / 2.0).collect();
    let mut gpu = Engine::gpu(MODEL, Detector::Msp, 1).await.expect("a WebGPU adapter");
    let mut cpu = Engine::cpu(MODEL, Detector::Msp, 1).unwrap();
    let (s_gpu, s_cpu) = (gpu.score(&x).await.unwrap()[0], cpu.score(&x).await.unwrap()[0]);
    assert!((s_gpu - s_cpu).abs() <= 1e-5 * s_cpu.abs().max(1e-3), "score: WebGPU {s_gpu}, CPU {s_cpu}");
    let (g_gpu, _) = gpu.input_gradient(&x, Direction::Out).await.unwrap();
    let (g_cpu, _) = cpu.input_gradient(&x, Direction::Out).await.unwrap();
    let dot: f64 = g_gpu.iter().zip(&g_cpu).map(|(a, b)| *a as f64 * *b as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let cosine = dot / (norm(&g_gpu) * norm(&g_cpu));
    assert!(cosine >= 0.9999, "gradient cosine {cosine}");

    let eps = 8.0 / 255.0;
    let options = AttackOptions::new(AttackSpec::new(eps, 5), Direction::Out);
    let mut records = 0;
    let result = gpu
        .attack(&x, &options, |_, _| {
            records += 1;
            true
        })
        .await
        .unwrap();
    assert_eq!(records, 6);
    assert!(result.scores[0] < s_gpu, "the attack did not lower the score: {s_gpu} -> {}", result.scores[0]);
    for (a, c) in result.adversarial.iter().zip(&x) {
        assert!(*a >= c - eps && *a <= c + eps && (0.0..=1.0).contains(a), "{a} from {c}");
    }
}

#[wasm_bindgen_test]
fn the_page_learns_which_detectors_a_file_holds_and_refuses_files_it_cannot_run() {
    assert_eq!(atd_wasm::runnable_detectors(MODEL).ok(), Some(r#"["msp"]"#.to_string()));
    assert!(atd_wasm::runnable_detectors(b"not a weights file").is_err());
    // The shipped baseline without its classifier head: a valid file with no detector to run.
    let weights = atd_core::Weights::from_bytes(MODEL).unwrap();
    let mut card = weights.card.clone();
    (card.classifier, card.baselines) = (None, None);
    let tensors = weights.tensors.into_iter().filter(|(name, _)| name.starts_with("extractor.")).collect();
    let headless = atd_core::weights::write_weights(&card, &tensors);
    assert!(atd_core::Weights::from_bytes(&headless).is_ok(), "the test file itself is valid");
    assert!(atd_wasm::runnable_detectors(&headless).is_err(), "a file without a head passed");
    // ATOM's K+1-way head: no MSP over its outlier class, and the error says why.
    let f = card.extractor.feature_dim();
    let mut atom = card.clone();
    atom.classifier = Some(11);
    atom.class_names.push("outlier".into());
    atom.outlier_class = true;
    let mut tensors = tensors.clone();
    for (name, shape) in [("classifier.weight", vec![f, 11]), ("classifier.bias", vec![11])] {
        let data = vec![0.0; shape.iter().product()];
        tensors.insert(name.to_string(), atd_core::weights::NamedTensor { shape, data });
    }
    let atom = atd_core::weights::write_weights(&atom, &tensors);
    assert!(atd_core::Weights::from_bytes(&atom).is_ok(), "the ATOM test file itself is valid");
    let err = atd_wasm::runnable_detectors(&atom).err().map(|e| format!("{:?}", wasm_bindgen::JsValue::from(e)));
    assert!(err.as_deref().is_some_and(|e| e.contains("outlier class")), "{err:?}");
}
