//! Helpers for the `atd` binary's tests: atd-train's test helpers (models, fixtures) and a
//! runner for the binary.
#![allow(dead_code)]

#[path = "../../../atd-train/tests/common/mod.rs"]
mod models;

pub use models::*;

mod training;
// Not every test binary uses these.
#[allow(unused_imports)]
pub use training::*;

/// Run the `atd` binary: (success, stdout, stderr).
pub fn atd(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atd")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A w x h PNG of a seeded pattern.
pub fn write_png(path: &std::path::Path, w: u32, h: u32, seed: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x as u8).wrapping_mul(seed), (y as u8).wrapping_add(seed), seed])
    });
    img.save(path).unwrap();
}
