//! `atd train` end to end on the small fixtures: the loss falls, an interrupted run resumes to
//! exactly the weights of an uninterrupted one, every extractor method and both generator modes
//! run and export a file with every detector; and the 2-D toy's margin claim.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atd_train::toy;
use common::*;
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atd-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(args: &[&str]) -> String {
    let (ok, out, err) = atd(args);
    assert!(ok, "atd {args:?} failed:\n{err}");
    out + &err
}

/// The per-epoch log without its timing fields.
fn log_without_timing(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let m = v.as_object_mut().unwrap();
            m.remove("epoch_seconds");
            m.remove("images_per_second");
            v
        })
        .collect()
}

fn losses(out: &Path) -> Vec<f64> {
    log_without_timing(out).iter().map(|l| l["loss"].as_f64().unwrap()).collect()
}

fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let w = atd_core::Weights::from_bytes(&std::fs::read(path).unwrap()).unwrap();
    w.tensors.into_iter().map(|(k, t)| (k, t.data)).collect()
}

fn extractor_args<'a>(data: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train", "extractor", "--arch", "tiny", "--data-dir", data, "--train-set", "cifar10-tiny.bin", "--val-size", "40",
        "--val-attack-size", "8", "--batch-size", "32", "--lr", "0.05", "--epochs", epochs, "--out", out,
    ]
}

/// A tiny standard extractor trained once and shared by the tests below.
fn standard_extractor() -> &'static PathBuf {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let data = fixture_dir();
        let out = temp("standard");
        run(&extractor_args(data.to_str().unwrap(), out.to_str().unwrap(), "4"));
        out
    })
}

#[test]
fn standard_training_lowers_the_loss_and_resumes_exactly() {
    let straight = standard_extractor();
    let l = losses(straight);
    assert_eq!(l.len(), 4);
    assert!(l[3] < l[0], "training loss did not fall: {l:?}");

    let data = fixture_dir();
    let (data, out) = (data.to_str().unwrap(), temp("resumed"));
    let out_s = out.to_str().unwrap();
    let mut first = extractor_args(data, out_s, "4");
    first.extend(["--stop-after", "2"]);
    let text = run(&first);
    assert!(text.contains("continue with --resume"), "{text}");
    assert!(!out.join("extractor.safetensors").exists(), "an unfinished run must not export");
    // Restarting without --resume must not overwrite the checkpoint.
    let (ok, _, err) = atd(&extractor_args(data, out_s, "4"));
    assert!(!ok && err.contains("--resume"), "{err}");
    // Resuming with another recipe is refused.
    let mut other = extractor_args(data, out_s, "4");
    other.extend(["--resume", "--seed", "9"]);
    let (ok, _, err) = atd(&other);
    assert!(!ok && err.contains("seed"), "{err}");

    let mut resume = extractor_args(data, out_s, "4");
    resume.push("--resume");
    run(&resume);
    assert_eq!(log_without_timing(&out), log_without_timing(straight));
    assert_eq!(tensors(&out.join("extractor.safetensors")), tensors(&straight.join("extractor.safetensors")));
}

#[test]
fn every_extractor_method_trains_and_exports_every_baseline() {
    let data = fixture_dir();
    let helper = standard_extractor().join("extractor.safetensors");
    for method in ["at", "hat", "oe", "aoe", "aloe"] {
        let out = temp(method);
        let mut args = extractor_args(data.to_str().unwrap(), out.to_str().unwrap(), "1");
        args.extend(["--method", method, "--attack-steps", "2", "--outliers", "ood-tiny.bin", "--train-limit", "64"]);
        if method == "hat" {
            args.extend(["--helper", helper.to_str().unwrap()]);
        }
        run(&args);
        let l = losses(&out);
        assert!(l.len() == 1 && l[0].is_finite() && l[0] > 0.0, "{method}: {l:?}");
        let weights = out.join("extractor.safetensors");
        let (ok, json, err) = atd(&["info", "--json", weights.to_str().unwrap()]);
        assert!(ok, "{method}: {err}");
        let card: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(card["training"]["recipe"]["method"], method);
        for d in ["msp", "md", "rmd", "openmax"] {
            assert!(card["thresholds"][d].is_number(), "{method}: no {d} threshold in {}", card["thresholds"]);
        }
    }
    let (ok, _, err) = atd(&["train", "extractor", "--method", "hat", "--out", temp("nohelper").to_str().unwrap(),
        "--data-dir", data.to_str().unwrap(), "--train-set", "cifar10-tiny.bin", "--val-size", "40"]);
    assert!(!ok && err.contains("--helper"), "{err}");
}

fn atd_args<'a>(data: &'a str, extractor: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train", "atd", "--extractor", extractor, "--data-dir", data, "--train-set", "cifar10-tiny.bin", "--outliers", "ood-tiny.bin",
        "--val-size", "40", "--val-ood-size", "40", "--val-attack-size", "8", "--batch-size", "32", "--attack-steps", "2",
        "--lr", "2e-3", "--epochs", epochs, "--out", out,
    ]
}

#[test]
fn atd_training_lowers_the_loss_resumes_and_exports_all_detectors() {
    let data = fixture_dir();
    let extractor = standard_extractor().join("extractor.safetensors");
    let (data, extractor) = (data.to_str().unwrap(), extractor.to_str().unwrap());
    let straight = temp("atd");
    run(&atd_args(data, extractor, straight.to_str().unwrap(), "4"));
    let l = losses(&straight);
    assert!(l[3] < l[0], "discriminator loss did not fall: {l:?}");
    let weights = straight.join("atd.safetensors");
    let info = run(&["info", weights.to_str().unwrap()]);
    for needle in ["discriminator: widths", "threshold:     atd", "threshold:     msp", "threshold:     openmax", "atd train atd"] {
        assert!(info.contains(needle), "info lacks {needle:?}:\n{info}");
    }

    let resumed = temp("atd-resumed");
    let mut first = atd_args(data, extractor, resumed.to_str().unwrap(), "4");
    first.extend(["--stop-after", "1"]);
    run(&first);
    let mut rest = atd_args(data, extractor, resumed.to_str().unwrap(), "4");
    rest.push("--resume");
    run(&rest);
    assert_eq!(log_without_timing(&resumed), log_without_timing(&straight));
    assert_eq!(tensors(&resumed.join("atd.safetensors")), tensors(&weights));

    // The trained-generator mode moves G; the frozen mode (the reference) leaves its weights.
    let trained = temp("atd-trained");
    let mut args = atd_args(data, extractor, trained.to_str().unwrap(), "2");
    args.extend(["--generator", "trained"]);
    run(&args);
    let (frozen_g, trained_g) = (tensors(&weights), tensors(&trained.join("atd.safetensors")));
    let key = "generator.output.weight";
    assert_ne!(frozen_g[key], trained_g[key], "the trained generator did not change");
    let no_attack = temp("atd-no-attack");
    let mut args = atd_args(data, extractor, no_attack.to_str().unwrap(), "1");
    args.push("--no-attack");
    assert!(run(&args).contains("OpenGAN-fea"));
}

#[test]
fn frozen_generator_keeps_its_initial_weights() {
    let data = fixture_dir();
    let extractor = standard_extractor().join("extractor.safetensors");
    let out = temp("atd-frozen");
    run(&atd_args(data.to_str().unwrap(), extractor.to_str().unwrap(), out.to_str().unwrap(), "1"));
    let mut more = atd_args(data.to_str().unwrap(), extractor.to_str().unwrap(), out.to_str().unwrap(), "2");
    more.push("--resume");
    run(&more);
    // best.safetensors is epoch 1 or 2; the checkpoint is after epoch 2: G's weights agree.
    let a = tensors(&out.join("best.safetensors"));
    let b = tensors(&out.join("atd.safetensors"));
    assert_eq!(a["generator.output.weight"], b["generator.output.weight"]);
    assert_eq!(a["generator.hidden.0.linear.weight"], b["generator.hidden.0.linear.weight"]);
}

#[test]
fn attacking_the_closed_set_widens_the_margin_around_it() {
    let data = toy::ToyData::new(0);
    let side = 81;
    let margin = |setting| toy::margin(&toy::decision_grid(&toy::train(&data, setting, 300, 0), side), side, &data.closed, true);
    let [standard, closed, _, _, atd] = toy::SETTINGS;
    let (m_standard, m_closed, m_atd) = (margin(standard), margin(closed), margin(atd));
    eprintln!("closed-set margin: standard {m_standard:.3}, closed attacked {m_closed:.3}, closed and open attacked {m_atd:.3}");
    assert!(m_closed > 1.5 * m_standard, "attacking the closed set did not widen its margin: {m_standard} -> {m_closed}");
    assert!(m_atd > 1.5 * m_standard, "ATD's setting did not widen the closed-set margin: {m_standard} -> {m_atd}");
}

#[test]
fn eval_reports_the_four_settings_and_attacks_only_hurt() {
    let data = fixture_dir();
    let weights = standard_extractor().join("extractor.safetensors");
    let json = temp("eval").with_extension("json");
    let out = run(&[
        "eval", weights.to_str().unwrap(), "--detector", "msp", "--data-dir", data.to_str().unwrap(), "--in", "cifar10-tiny.bin",
        "--out", "ood-tiny.bin", "--limit", "40", "--out-limit", "40", "--steps", "3", "--json", json.to_str().unwrap(),
    ]);
    for needle in ["| OOD set |", "Clean", "In-and-Out", "ood-tiny", "**average**"] {
        assert!(out.contains(needle), "eval output lacks {needle:?}:\n{out}");
    }
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let auroc = |k: usize| result["average"][k]["auroc"].as_f64().unwrap();
    // Attacking either side can only lower AUROC; attacking both lowers it most.
    assert!(auroc(1) <= auroc(0) + 1e-9 && auroc(2) <= auroc(0) + 1e-9, "{}", result["average"]);
    assert!(auroc(3) <= auroc(1).min(auroc(2)) + 1e-9, "{}", result["average"]);
    assert!(auroc(3) < auroc(0), "the attack changed nothing: {}", result["average"]);
}
