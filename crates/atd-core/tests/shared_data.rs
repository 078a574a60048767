//! Readers against the real data pack (`ATD_DATA`, default `../shared/data` beside the checkout).
//! Skipped with a message when the pack is not on this machine.

use std::path::PathBuf;

use atd_core::data::{LabelBytes, read_cifar_bin, read_image_folder};

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ATD_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    if dir.join("cifar10-tiny.bin").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: data pack not found at {} (set ATD_DATA)", dir.display());
        None
    }
}

#[test]
fn fixture_files_read_with_their_documented_labels() {
    let Some(dir) = data_dir() else { return };
    let tiny = read_cifar_bin(&dir.join("cifar10-tiny.bin"), LabelBytes::One).unwrap();
    assert_eq!(tiny.len(), 200);
    assert!(tiny.labels.iter().enumerate().all(|(i, &l)| l as usize == i % 10), "class-interleaved order");
    let ood = read_cifar_bin(&dir.join("ood-tiny.bin"), LabelBytes::One).unwrap();
    assert_eq!(ood.len(), 200);
    assert!(ood.labels.iter().enumerate().all(|(i, &l)| l as usize == i % 2), "alternating source ids");
    // The tiny file is the head of the test file.
    let test = read_cifar_bin(&dir.join("cifar10-test.bin"), LabelBytes::One).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.truncated(200), tiny);
}

#[test]
fn a_truncated_copy_is_rejected_naming_file_and_record() {
    let Some(dir) = data_dir() else { return };
    let bytes = std::fs::read(dir.join("cifar10-tiny.bin")).unwrap();
    let path = std::env::temp_dir().join(format!("atd-truncated-{}.bin", std::process::id()));
    std::fs::write(&path, &bytes[..3073 * 57 + 100]).unwrap();
    let err = read_cifar_bin(&path, LabelBytes::One).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(err.contains("atd-truncated") && err.contains("record 57 is truncated (100 of 3073 bytes)"), "{err}");
}

#[test]
fn the_training_zip_reads_as_image_folder() {
    let Some(dir) = data_dir() else { return };
    let set = read_image_folder(&dir.join("cifar10-train.zip"), |_, _| {}).unwrap();
    assert_eq!(set.len(), 50_000);
    assert_eq!(
        set.class_names,
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    );
    for c in 0..10u16 {
        assert_eq!(set.labels.iter().filter(|&&l| l == c).count(), 5_000);
    }
    // JPEG decoders differ by a few levels, but images are real photos, not blank.
    let mean = set.pixels.iter().map(|&p| p as f64).sum::<f64>() / set.pixels.len() as f64;
    assert!((90.0..160.0).contains(&mean), "mean pixel {mean}");
}
