//! The page's CIFAR-10 samples: one test image per class as a 32x32 PNG, with the
//! `index.json` the page lists them from (`pkg-scripts/build-web.sh` runs this when the data
//! pack is on the machine; the PNGs stay git-ignored, datasets are never committed).
//! `cargo run --release -p atd-core --example cifar_samples -- <cifar10-test.bin> <out dir>`

use std::path::PathBuf;

use atd_core::card::CIFAR10_CLASSES;
use atd_core::data::{LabelBytes, read_cifar_bin};
use atd_core::preprocess::chw_bytes_to_png;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, out] = args.as_slice() else {
        return Err("usage: cifar_samples <cifar10-test.bin> <out dir>".into());
    };
    let set = read_cifar_bin(&PathBuf::from(source), LabelBytes::One)?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let mut index = Vec::new();
    // Every 111th of the first thousand records: the records are class-interleaved, so this
    // gives one image of each class.
    for i in (0..set.len().min(1000)).step_by(111) {
        let class = CIFAR10_CLASSES.get(set.labels[i] as usize).ok_or("a label outside CIFAR-10's ten classes")?;
        let file = format!("{class}-{i}.png");
        std::fs::write(out.join(&file), chw_bytes_to_png(set.image(i))?)?;
        index.push(serde_json::json!({ "name": format!("CIFAR-10 {class}"), "file": file }));
    }
    std::fs::write(out.join("index.json"), serde_json::to_string(&index)?)?;
    println!("extracted {} CIFAR-10 test images into {}", index.len(), out.display());
    Ok(())
}
