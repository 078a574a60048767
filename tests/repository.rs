//! The repository's size rule (docs/training.md, "What the repository keeps"): the checkpoints
//! git tracks stay under 40 MB, so that a clone stays small and finished experiments leave the
//! tree (their logs stay under docs/logs/).

use std::path::Path;
use std::process::Command;

const CHECKPOINT_LIMIT_BYTES: u64 = 40 * 1024 * 1024;

#[test]
fn tracked_checkpoints_stay_under_the_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let listing = Command::new("git")
        .args(["ls-files", "-z", "checkpoints"])
        .current_dir(&root)
        .output()
        .expect("git runs (the tests run in a checkout)");
    assert!(listing.status.success(), "git ls-files failed: {}", String::from_utf8_lossy(&listing.stderr));
    let files: Vec<&[u8]> = listing.stdout.split(|&b| b == 0).filter(|f| !f.is_empty()).collect();
    assert!(!files.is_empty(), "no tracked checkpoints: the shipped runs must resume from checkpoints/");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(root.join(String::from_utf8_lossy(f).as_ref())).map_or(0, |m| m.len()))
        .sum();
    assert!(
        total < CHECKPOINT_LIMIT_BYTES,
        "checkpoints/ tracks {:.1} MB, over the {} MB rule: move finished experiments out (keep their logs in docs/logs/)",
        total as f64 / 1048576.0,
        CHECKPOINT_LIMIT_BYTES / 1048576
    );
}
