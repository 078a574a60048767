//! `atd check`: passes on a real attack, fails when asked the impossible.

mod common;

use common::*;

#[test]
fn check_passes_on_a_real_attack_and_fails_when_asked_the_impossible() {
    let data = fixture_dir();
    let weights = standard_extractor().join("extractor.safetensors");
    let (data, weights) = (data.to_str().unwrap(), weights.to_str().unwrap());
    let mut args = check_args(data, weights);
    args.extend(["--transfer-from", weights]);
    let out = run(&args);
    assert_eq!(out.matches("PASS").count(), 7, "{out}");
    // An AUROC below 0 at a huge eps cannot happen: the check must fail, with a non-zero exit.
    let mut impossible = check_args(data, weights);
    impossible.push("--broken-auroc=-1");
    let (ok, out, err) = atd(&impossible);
    assert!(
        !ok && out.contains("FAIL  a huge eps breaks the detector") && err.contains("1 of 6 checks failed"),
        "{out}\n{err}"
    );
}
