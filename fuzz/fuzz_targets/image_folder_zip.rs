//! The ZIP reader under the ImageFolder loader (`<class>/<image>` entries, stored or deflated):
//! a set of 32x32 images with labels inside the class list, or a named error.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(set) = atd_core::data::parse_image_folder_zip(Path::new("fuzz.zip"), data, |_, _| {}) else { return };
    assert_eq!(set.pixels.len(), set.len() * atd_core::IMAGE_VALUES);
    assert!(set.labels.iter().all(|&l| (l as usize) < set.class_names.len()));
});
