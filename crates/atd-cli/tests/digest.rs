//! `atd digest`.

mod common;

use atd_core::card::ExtractorSpec;
use common::*;

#[test]
fn digest_prints_the_content_digest_of_each_file() {
    let dir = scratch("atd-cli-digest");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    random_model(full_card(ExtractorSpec::tiny(), 3), 2).save(&a).unwrap();
    random_model(full_card(ExtractorSpec::tiny(), 3), 3).save(&b).unwrap();
    let (ok, out, err) = atd(&["digest", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let expected = atd_core::digest::weights_digest(&std::fs::read(&a).unwrap()).unwrap();
    assert_eq!(lines[0], format!("{expected}  {}", a.display()));
    assert_ne!(
        lines[0].split_whitespace().next(),
        lines[1].split_whitespace().next(),
        "different weights, same digest"
    );
    let (ok, _, err) = atd(&["digest", dir.join("missing.safetensors").to_str().unwrap()]);
    assert!(!ok && err.contains("missing.safetensors"), "{err}");
}
