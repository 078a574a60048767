//! `atd bench`: training, PGD and forward throughput of an architecture on random images.

use atd_train::Backend;

/// `atd bench`'s arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "small")]
    pub arch: atd_train::train::extractor::Arch,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps of each kind (after one warm-up step).
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// One JSON object instead of text (what pkg-scripts/bench-peers.sh reads).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs { arch, batch, iterations, backend, json } = args;
    let t = atd_train::bench::measure(arch.spec(), batch, iterations, &backend.device()?)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if json {
        let line = serde_json::json!({
            "arch": format!("{arch:?}").to_lowercase(), "batch": batch, "threads": threads,
            "train": t.train_images_per_second, "pgd": t.pgd_image_steps_per_second,
            "forward": t.forward_images_per_second,
        });
        println!("{line}");
        return Ok(());
    }
    let setting = format!("({arch:?}, batch {batch}, {backend:?}, {threads} threads)");
    println!("train step: {:.1} images/s {setting}", t.train_images_per_second);
    println!("pgd step:   {:.1} image-steps/s {setting}", t.pgd_image_steps_per_second);
    println!("forward:    {:.1} images/s {setting}", t.forward_images_per_second);
    Ok(())
}
