//! Time each kernel of a model's forward and backward pass on the GPU:
//! `cargo run --release -p atd-gpu --example profile -- <weights> [atd|msp] [batch] [direct|tiled]`
//! (the forward-convolution kernel; default: the one the engine picks for the adapter).

use std::time::Instant;

use atd_gpu::Detector;
use atd_gpu::gpu::Gpu;
use atd_gpu::{ConvStrategy, Plan};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).expect("weights file");
    let detector = Detector::from_name(args.get(2).map_or("atd", String::as_str)).unwrap();
    let batch: usize = args.get(3).map(|b| b.parse().unwrap()).unwrap_or(1);
    let gpu = pollster::block_on(Gpu::new()).unwrap();
    let conv = match args.get(4).map(String::as_str) {
        Some("direct") => ConvStrategy::Direct,
        Some("tiled") => ConvStrategy::Tiled,
        _ => ConvStrategy::for_adapter(gpu.adapter.software),
    };
    let plan = Plan::new(&atd_core::Weights::from_bytes(&bytes).unwrap(), detector, batch, conv).unwrap();
    println!("adapter: {:?}, {conv:?} forward convolutions", gpu.adapter);
    let mut resident = gpu.upload(&plan.weights, plan.arena_len).unwrap();
    let mut table = plan.forward.clone();
    table.extend(plan.backward.iter().copied());
    let all: Vec<usize> = (0..table.len()).collect();
    let run = |resident: &mut _, schedule: &[usize]| {
        pollster::block_on(gpu.run(resident, &table, schedule, &[], &[(0, 1)])).unwrap()
    };
    run(&mut resident, &all); // warm up (shader compilation)
    let t = Instant::now();
    for _ in 0..5 {
        run(&mut resident, &all);
    }
    println!("{} ops, forward + backward: {:.1} ms", table.len(), t.elapsed().as_secs_f64() * 200.0);
    let mut costs: Vec<(f64, usize)> = (0..table.len())
        .map(|i| {
            let t = Instant::now();
            for _ in 0..5 {
                run(&mut resident, &[i]);
            }
            (t.elapsed().as_secs_f64() * 200.0, i)
        })
        .collect();
    let empty = {
        let t = Instant::now();
        for _ in 0..5 {
            run(&mut resident, &[]);
        }
        t.elapsed().as_secs_f64() * 200.0
    };
    println!("empty submission + readback: {empty:.2} ms");
    costs.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (ms, i) in costs.iter().take(12) {
        let op = &table[*i];
        println!("{ms:8.2} ms  {:?} threads {} params {:?}", op.kernel, op.threads, &op.params[..12]);
    }
}
