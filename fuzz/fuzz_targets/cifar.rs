//! The CIFAR record reader, with one and two label bytes: whole records or a named error.
#![no_main]

use std::path::Path;

use atd_core::data::{LabelBytes, parse_cifar_bin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (label_bytes, width) in [(LabelBytes::One, 1), (LabelBytes::Two, 2)] {
        if let Ok(set) = parse_cifar_bin(Path::new("fuzz.bin"), data, label_bytes) {
            assert_eq!(set.len() * (atd_core::IMAGE_VALUES + width), data.len());
            assert_eq!(set.pixels.len(), set.len() * atd_core::IMAGE_VALUES);
        }
    }
});
