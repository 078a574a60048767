//! Image bytes through decoding and preprocessing (PNG, JPEG, WebP, GIF, BMP; alpha, 16-bit,
//! CMYK, huge declared sizes): an error or a 3x32x32 input in [0, 1], never a panic, never more
//! memory than the decoder's budget.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = atd_core::preprocess::image_to_input(data) else { return };
    assert_eq!(input.len(), atd_core::IMAGE_VALUES);
    assert!(input.iter().all(|v| (0.0..=1.0).contains(v)), "values outside [0, 1]");
});
