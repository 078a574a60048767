//! A contact sheet of the synthetic outliers ATD can train and validate on: one row per family
//! (the training families, then the validation ones), eight seeded samples each, 2x scale.
//! `cargo run --release -p atd-train --example synthetic_outliers -- docs/synthetic-outliers.png`

use atd_train::synthetic::{TRAIN_FAMILIES, VAL_FAMILIES, procedural};

fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "synthetic-outliers.png".into());
    let families: Vec<&str> = TRAIN_FAMILIES.iter().chain(&VAL_FAMILIES).copied().collect();
    let (per_row, scale, cell) = (8u32, 2u32, 66u32);
    let set = procedural(&families, families.len() * per_row as usize, 1);
    let mut sheet =
        image::RgbImage::from_pixel(per_row * cell, families.len() as u32 * cell, image::Rgb([255, 255, 255]));
    for i in 0..set.len() {
        let (row, col) = ((i % families.len()) as u32, (i / families.len()) as u32);
        let chw = set.image(i);
        for y in 0..32 * scale {
            for x in 0..32 * scale {
                let p = (y / scale * 32 + x / scale) as usize;
                sheet.put_pixel(col * cell + x, row * cell + y, image::Rgb([chw[p], chw[1024 + p], chw[2048 + p]]));
            }
        }
    }
    sheet.save(&out)?;
    println!("wrote {out}: rows {}", families.join(", "));
    Ok(())
}
