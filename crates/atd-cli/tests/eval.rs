//! `atd eval` on the fixtures: the four settings, attacks that only hurt, synthetic OOD sets.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn eval_reports_the_four_settings_and_attacks_only_hurt() {
    let data = fixture_dir();
    let weights = standard_extractor().join("extractor.safetensors");
    let json = temp("eval").with_extension("json");
    let mut args = vec![
        "eval",
        weights.to_str().unwrap(),
        "--detector",
        "msp",
        "--steps",
        "3",
        "--attack",
        "pgd,apgd,noise",
        "--transfer-from",
        weights.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend(tiny_eval_data(data.to_str().unwrap(), "40"));
    let out = run(&args);
    for needle in [
        "| OOD set |",
        "Clean",
        "In-and-Out",
        "ood-tiny",
        "**average**",
        "PGD-3",
        "APGD-3",
        "random sign noise",
        "FGSM transferred",
        "per-image worst case",
        "classifier accuracy",
    ] {
        assert!(out.contains(needle), "eval output lacks {needle:?}:\n{out}");
    }
    let results: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(results.len(), 5, "pgd, apgd, noise, transfer and their worst case");
    let auroc = |r: usize, k: usize| results[r]["average"][k]["auroc"].as_f64().unwrap();
    for r in [0, 1, 4] {
        let result = &results[r];
        // Attacking either side can only lower AUROC; attacking both lowers it most (for the
        // optimising attacks: one FGSM step or noise may overshoot and help).
        assert!(auroc(r, 1) <= auroc(r, 0) + 1e-9 && auroc(r, 2) <= auroc(r, 0) + 1e-9, "{}", result["average"]);
        assert!(auroc(r, 3) <= auroc(r, 1).min(auroc(r, 2)) + 1e-9, "{}", result["average"]);
    }
    assert!((0..5).all(|r| auroc(r, 0) == auroc(0, 0)), "every attack starts from the same clean scores");
    assert!(auroc(0, 3) < auroc(0, 0), "PGD changed nothing: {}", results[0]["average"]);
    // The per-image worst case is at least as strong as every attack in it.
    for r in 0..4 {
        assert!(auroc(4, 3) <= auroc(r, 3) + 1e-9, "worst case {} vs {}", auroc(4, 3), auroc(r, 3));
    }
    // White-box PGD hurts more than noise.
    assert!(auroc(0, 3) < auroc(2, 3), "PGD {} vs noise {}", auroc(0, 3), auroc(2, 3));

    // Keeping each image's best point over the steps can only move its score further than the
    // last iterate does, so every attacked AUROC is at most the plain PGD's.
    let best_json = temp("eval-best").with_extension("json");
    let mut best_args = vec![
        "eval",
        weights.to_str().unwrap(),
        "--detector=msp",
        "--steps=3",
        "--best-of-steps",
        "--json",
        best_json.to_str().unwrap(),
    ];
    best_args.extend(tiny_eval_data(data.to_str().unwrap(), "40"));
    assert!(run(&best_args).contains("PGD-3, best of steps"));
    let best: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&best_json).unwrap()).unwrap();
    let best_auroc = |k: usize| best[0]["average"][k]["auroc"].as_f64().unwrap();
    assert_eq!(best_auroc(0), auroc(0, 0));
    for k in 1..4 {
        assert!(
            best_auroc(k) <= auroc(0, k) + 1e-9,
            "setting {k}: best of steps {} vs last {}",
            best_auroc(k),
            auroc(0, k)
        );
    }
}

/// The fixture data of the eval, check and report tests: the tiny CIFAR and OOD files, `limit`
/// images of each.
#[test]
fn eval_draws_a_synthetic_family_as_an_ood_set() {
    let data = fixture_dir();
    let weights = standard_extractor().join("extractor.safetensors");
    let (data, weights) = (data.to_str().unwrap(), weights.to_str().unwrap());
    let with_out = |out: &'static str| {
        let limits = ["--in", "cifar10-tiny.bin", "--limit", "20", "--out-limit", "10", "--out", out];
        let mut args = vec!["eval", weights, "--detector", "msp", "--steps", "1", "--data-dir", data];
        args.extend(limits);
        atd(&args)
    };
    let (ok, out, err) = with_out("synthetic:cells,ood-tiny.bin");
    assert!(ok, "{err}");
    assert!(out.contains("| synthetic:cells | 10 |") && out.contains("| ood-tiny | 10 |"), "{out}");
    let (ok, _, err) = with_out("synthetic:swirl");
    assert!(!ok && err.contains("\"swirl\"") && err.contains("star-field"), "{err}");
}
