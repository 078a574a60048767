//! `atd train extractor` end to end on the small fixtures: the loss falls, a stopped run resumes
//! to exactly the weights of an uninterrupted one, every method trains and exports a file with every
//! baseline, and the weight average and N-FGSM are what the recipe says.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

#[test]
fn standard_training_lowers_the_loss_and_resumes_exactly() {
    let straight = standard_extractor();
    let l = losses(straight);
    assert_eq!(l.len(), 4);
    assert!(l[3] < l[0], "training loss did not fall: {l:?}");
    // Every epoch says how busy the cores were and how much memory the process held.
    for line in std::fs::read_to_string(straight.join("log.jsonl")).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let cores = v["train_cores"].as_f64().unwrap_or_else(|| panic!("no train_cores: {line}"));
        assert!(cores > 0.0 && cores < 64.0, "{line}");
        assert!(v["rss_mib"].as_f64().is_some_and(|m| m > 1.0), "{line}");
    }

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
    for method in ["at", "hat", "oe", "aoe", "aloe", "osad"] {
        // Not temp(method): the OSAD test beside it runs at the same time in temp("osad").
        let out = temp(&format!("every-method-{method}"));
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
    let (ok, _, err) = atd(&[
        "train",
        "extractor",
        "--method",
        "hat",
        "--out",
        temp("nohelper").to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--train-set",
        "cifar10-tiny.bin",
        "--val-size",
        "40",
    ]);
    assert!(!ok && err.contains("--helper"), "{err}");
}

#[test]
fn extractor_weight_averaging_with_noisy_fgsm_is_exported_logged_and_resumes_exactly() {
    let data = fixture_dir();
    let data = data.to_str().unwrap();
    let train_with = |out: &Path, extra: &[&str]| {
        let mut args = extractor_args(data, out.to_str().unwrap(), "2");
        args.extend(["--method", "at", "--train-limit", "64"]);
        // N-FGSM unless the case names its own attack.
        if !extra.contains(&"--attack") {
            args.extend(["--attack", "nfgsm"]);
        }
        args.extend(extra);
        atd(&args)
    };
    let exported = |out: &Path| tensors(&out.join("extractor.safetensors"));
    let (plain, no_decay, averaged, resumed, fgsm) =
        (temp("ext-ema-plain"), temp("ext-ema-0"), temp("ext-ema-0.9"), temp("ext-ema-resumed"), temp("ext-fgsm"));
    for (out, extra) in [
        (&plain, &[][..]),
        (&no_decay, &["--ema", "0"]),
        (&averaged, &["--ema", "0.9"]),
        (&fgsm, &["--attack", "fgsm"]),
    ] {
        let (ok, _, err) = train_with(out, extra);
        assert!(ok, "{err}");
    }
    // The attack is part of the recipe: N-FGSM trains on other images than FGSM-RS.
    assert_ne!(losses(&plain), losses(&fgsm));
    // Decay 0 keeps the last iterate: the plain run's weights. The average is another network,
    // and the log scores both it and the live weights.
    let key = "extractor.blocks.0.conv1.weight";
    assert_eq!(exported(&no_decay)[key], exported(&plain)[key]);
    assert_ne!(exported(&averaged)[key], exported(&plain)[key], "the average was not exported");
    for line in log_without_timing(&averaged) {
        assert!(line["live_val_pgd10_accuracy"].is_number() && line["val_pgd10_accuracy"].is_number(), "{line}");
    }
    assert!(log_without_timing(&plain)[0].get("live_val_accuracy").is_none());

    assert_stopped_and_resumed_run_matches(
        &train_with,
        &["--ema", "0.9"],
        &resumed,
        &averaged,
        "extractor.safetensors",
    );
}

#[test]
fn atom_trains_an_outlier_class_on_a_mined_pool_and_resumes_exactly() {
    let data = fixture_dir();
    let data = data.to_str().unwrap();
    let train_with = |out: &Path, extra: &[&str]| {
        let mut args = extractor_args(data, out.to_str().unwrap(), "2");
        args.extend(["--method", "atom", "--attack-steps", "2", "--outliers", "ood-tiny.bin", "--train-limit", "64"]);
        args.extend(["--synthetic-outliers", "32", "--derived-outliers", "16"]);
        args.extend(extra);
        atd(&args)
    };
    let (straight, resumed, hardest) = (temp("atom"), temp("atom-resumed"), temp("atom-q0"));
    for (out, extra) in [(&straight, &[][..]), (&hardest, &["--atom-quantile", "0"])] {
        let (ok, _, err) = train_with(out, extra);
        assert!(ok, "{err}");
    }
    // The mined outliers depend on the quantile: from the second epoch (mined by a trained
    // model) the two runs train on other outliers.
    let (l, l0) = (losses(&straight), losses(&hardest));
    assert!(l.iter().all(|x| x.is_finite() && *x > 0.0), "{l:?}");
    assert_ne!(l[1], l0[1], "the quantile changed nothing");

    // A K+1-way classifier whose detector is its outlier class; no class-conditional baselines.
    let weights = straight.join("extractor.safetensors");
    let (ok, json, err) = atd(&["info", "--json", weights.to_str().unwrap()]);
    assert!(ok, "{err}");
    let card: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(card["classifier"], 11);
    assert_eq!(card["outlier_class"], true);
    assert_eq!(card["class_names"][10], "outlier");
    assert!(card["thresholds"]["outlier-class"].is_number(), "{}", card["thresholds"]);
    for absent in ["msp", "md", "openmax"] {
        assert!(card["thresholds"].get(absent).is_none(), "{absent} on an ATOM file: {}", card["thresholds"]);
    }
    // `atd eval` attacks it end to end like any detector.
    let mut eval = vec!["eval", weights.to_str().unwrap(), "--detector", "outlier-class", "--steps", "2"];
    eval.extend(tiny_eval_data(data, "16"));
    let (ok, out, err) = atd(&eval);
    assert!(ok && out.contains("outlier-class"), "{out}{err}");

    assert_stopped_and_resumed_run_matches(&train_with, &[], &resumed, &straight, "extractor.safetensors");

    // The pool extensions belong to ATOM.
    let aoe_pool = temp("aoe-pool");
    let mut aoe = extractor_args(data, aoe_pool.to_str().unwrap(), "1");
    aoe.extend(["--method", "aoe", "--synthetic-outliers", "8"]);
    let (ok, _, err) = atd(&aoe);
    assert!(!ok && err.contains("--method atom"), "{err}");
}

#[test]
fn osad_trains_denoising_blocks_with_its_decoder_and_rotation_heads_and_resumes_exactly() {
    let data = fixture_dir();
    let data = data.to_str().unwrap();
    let train_with = |out: &Path, extra: &[&str]| {
        let mut args = extractor_args(data, out.to_str().unwrap(), "2");
        args.extend(["--method", "osad", "--attack-steps", "2", "--train-limit", "64"]);
        args.extend(extra);
        atd(&args)
    };
    let (straight, resumed, no_heads) = (temp("osad"), temp("osad-resumed"), temp("osad-no-heads"));
    for (out, extra) in [(&straight, &[][..]), (&no_heads, &["--reconstruction-weight", "0", "--rotation-weight", "0"])]
    {
        let (ok, _, err) = train_with(out, extra);
        assert!(ok, "{err}");
    }
    // The decoder and rotation losses are part of what trains the extractor.
    let file = tensors(&straight.join("extractor.safetensors"));
    let key = "extractor.blocks.0.conv1.weight";
    assert_ne!(file[key], tensors(&no_heads.join("extractor.safetensors"))[key]);
    // The file holds the denoising blocks (after the tiny preset's second stage) and the
    // classifier, not the training-time decoder and rotation head.
    assert!(file.contains_key("extractor.denoise.0.output.weight"), "{:?}", file.keys());
    assert!(
        file.keys().all(|k| k.starts_with("extractor.") || k.starts_with("classifier.") || k.starts_with("baselines."))
    );
    let weights = straight.join("extractor.safetensors");
    let (ok, json, err) = atd(&["info", "--json", weights.to_str().unwrap()]);
    assert!(ok, "{err}");
    let card: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(card["extractor"]["denoise"], serde_json::json!([1]));
    // The decoder, the rotation head and their optimizer state are checkpointed.
    assert_stopped_and_resumed_run_matches(&train_with, &[], &resumed, &straight, "extractor.safetensors");
}
