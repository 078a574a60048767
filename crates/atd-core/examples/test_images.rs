//! The browser end-to-end test's images, so it needs no PNG codec of its own
//! (`tests/browser/e2e.mjs` runs this):
//! - `test_images write <dir> [cifar10-test.bin]`: `cifar-test-7.png` (CIFAR-10 test record 7,
//!   upscaled 2x so the page has to resize it; a generated pattern named `generated.png`
//!   without the data pack), `flat-8x8.png` and `huge-4000x3000.png`;
//! - `test_images chw <png>`: the image as the model sees it (32x32 CHW bytes) on stdout, as JSON
//!   with its original size.

use std::path::{Path, PathBuf};

use atd_core::data::{LabelBytes, read_cifar_bin};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write_png(path: &Path, width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Result<()> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
    image.save(path)?;
    Ok(())
}

fn write(dir: &Path, cifar: Option<&Path>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    match cifar.filter(|p| p.exists()) {
        Some(path) => {
            let set = read_cifar_bin(path, LabelBytes::One)?;
            let chw = set.image(7);
            write_png(&dir.join("cifar-test-7.png"), 64, 64, |x, y| {
                let p = (y / 2 * 32 + x / 2) as usize;
                [chw[p], chw[1024 + p], chw[2048 + p]]
            })?;
        }
        None => write_png(&dir.join("generated.png"), 64, 64, |x, y| {
            let i = (y * 64 + x) * 3;
            [(i * 37 % 256) as u8, ((i + 1) * 37 % 256) as u8, ((i + 2) * 37 % 256) as u8]
        })?,
    }
    write_png(&dir.join("flat-8x8.png"), 8, 8, |_, _| [200; 3])?;
    write_png(&dir.join("huge-4000x3000.png"), 4000, 3000, |x, y| {
        let v = (((x * 3) >> 4) ^ (y >> 3)) as u8;
        [v, v.wrapping_add(85), v.wrapping_add(170)]
    })?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["write", dir, rest @ ..] => write(Path::new(dir), rest.first().map(Path::new)),
        ["chw", png] => {
            let bytes = std::fs::read(PathBuf::from(png))?;
            let decoded = atd_core::preprocess::decode(&bytes)?;
            let input = atd_core::preprocess::to_input(&decoded);
            let chw = atd_core::preprocess::input_to_chw_bytes(&input);
            let json = serde_json::json!({ "width": decoded.width(), "height": decoded.height(), "chw": chw });
            println!("{json}");
            Ok(())
        }
        _ => Err("usage: test_images write <dir> [cifar10-test.bin] | test_images chw <png>".into()),
    }
}
