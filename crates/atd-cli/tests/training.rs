//! `atd train` end to end on the small fixtures: the loss falls, an interrupted run resumes to
//! exactly the weights of an uninterrupted one, every extractor method and both generator modes
//! run and export a file with every detector; and the 2-D toy's margin claim.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atd_train::eval::EvalCache;
use atd_train::toy;
use common::*;
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    scratch(&format!("atd-train-{name}"))
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
            m.remove("train_cores");
            m.remove("rss_mib");
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
        "train",
        "extractor",
        "--arch",
        "tiny",
        "--data-dir",
        data,
        "--train-set",
        "cifar10-tiny.bin",
        "--val-size",
        "40",
        "--val-attack-size",
        "8",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--epochs",
        epochs,
        "--out",
        out,
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

/// After a SIGKILL at any moment, what the run folder holds is whole: every log line parses,
/// best.safetensors is a valid weights file, the checkpoint (when there is one) has its state.
fn assert_nothing_half_written(out: &Path, when: &str) {
    if let Ok(text) = std::fs::read_to_string(out.join("log.jsonl")) {
        for line in text.lines() {
            assert!(serde_json::from_str::<Value>(line).is_ok(), "{when}: a torn log line {line:?}");
        }
    }
    if let Ok(bytes) = std::fs::read(out.join("best.safetensors")) {
        assert!(atd_core::Weights::from_bytes(&bytes).is_ok(), "{when}: best.safetensors is broken");
    }
    let checkpoint = out.join("checkpoint");
    if checkpoint.exists() {
        let state = std::fs::read_to_string(checkpoint.join("state.json")).unwrap();
        assert!(serde_json::from_str::<Value>(&state).is_ok(), "{when}: checkpoint state {state:?}");
        assert!(checkpoint.join("net.bpk").exists(), "{when}: the checkpoint lacks its network");
    }
}

/// Run `args` (a command that resumes: `train ... --resume`, or `report` with its cache),
/// killing it with SIGKILL after each delay (a seeded spread over the run's length), then let
/// it finish; `whole` checks `out` after every kill.
fn run_with_kills(args: &[&str], out: &Path, whole: fn(&Path, &str), seed: u64, kills: usize, spread_ms: u64) {
    let mut rng = atd_train::rng::Rng::new(seed);
    for k in 0..kills {
        let ms = 50 + rng.next_u64() % spread_ms;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atd"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        whole(out, &format!("kill {k} after {ms} ms"));
    }
    run(args);
    whole(out, "after the last resume");
    let leftovers: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial") || n.contains(".old") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn training_killed_at_random_moments_resumes_to_the_same_bits() {
    let data = fixture_dir();
    let data = data.to_str().unwrap();
    let straight = standard_extractor();
    let out = temp("killed-extractor");
    let mut args = extractor_args(data, out.to_str().unwrap(), "4");
    args.push("--resume");
    // The whole run takes ~0.7 s here (ATD's ~1.8 s): kills land in loading, epochs and
    // checkpoint writes, and each resume gets a little further.
    run_with_kills(&args, &out, assert_nothing_half_written, 17, 12, 600);
    assert_eq!(log_without_timing(&out), log_without_timing(straight));
    assert_eq!(tensors(&out.join("extractor.safetensors")), tensors(&straight.join("extractor.safetensors")));

    let extractor = straight.join("extractor.safetensors");
    let (plain, killed) = (temp("atd-unkilled"), temp("atd-killed"));
    run(&atd_args(data, extractor.to_str().unwrap(), plain.to_str().unwrap(), "3"));
    let mut args = atd_args(data, extractor.to_str().unwrap(), killed.to_str().unwrap(), "3");
    args.push("--resume");
    run_with_kills(&args, &killed, assert_nothing_half_written, 29, 12, 1500);
    assert_eq!(log_without_timing(&killed), log_without_timing(&plain));
    assert_eq!(tensors(&killed.join("atd.safetensors")), tensors(&plain.join("atd.safetensors")));
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

    let (ok, _, err) = train_with(&resumed, &["--ema", "0.9", "--stop-after", "1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = train_with(&resumed, &["--ema", "0.9", "--resume"]);
    assert!(ok, "{err}");
    assert_eq!(log_without_timing(&resumed), log_without_timing(&averaged));
    assert_eq!(exported(&resumed), exported(&averaged));
}

fn atd_args<'a>(data: &'a str, extractor: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "atd",
        "--extractor",
        extractor,
        "--data-dir",
        data,
        "--train-set",
        "cifar10-tiny.bin",
        "--outliers",
        "ood-tiny.bin",
        "--val-size",
        "40",
        "--val-ood-size",
        "40",
        "--val-attack-size",
        "8",
        "--batch-size",
        "32",
        "--attack-steps",
        "2",
        "--lr",
        "2e-3",
        "--epochs",
        epochs,
        "--out",
        out,
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
    for needle in
        ["discriminator: widths", "threshold:     atd", "threshold:     msp", "threshold:     openmax", "atd train atd"]
    {
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

    // The Table 3 ablation attacks the generated features too: same seed and data, other D.
    let (plain, ablation) = (temp("atd-plain"), temp("atd-ablation"));
    run(&atd_args(data, extractor, plain.to_str().unwrap(), "1"));
    let mut args = atd_args(data, extractor, ablation.to_str().unwrap(), "1");
    args.extend(["--attack-generated", "0.5"]);
    assert!(run(&args).contains("generated features attacked too"));
    let (a, b) = (tensors(&plain.join("atd.safetensors")), tensors(&ablation.join("atd.safetensors")));
    assert_ne!(
        a["discriminator.output.weight"], b["discriminator.output.weight"],
        "attacking generated features changed nothing"
    );
    let contradiction_out = temp("atd-contradiction");
    let mut contradiction = atd_args(data, extractor, contradiction_out.to_str().unwrap(), "1");
    contradiction.extend(["--no-attack", "--attack-generated", "0.5"]);
    let (ok, _, err) = atd(&contradiction);
    assert!(!ok && err.contains("drop --no-attack"), "{err}");
}

#[test]
fn extended_outliers_change_training_and_select_on_unseen_sets() {
    let data = fixture_dir();
    let extractor = standard_extractor().join("extractor.safetensors");
    let (data, extractor) = (data.to_str().unwrap(), extractor.to_str().unwrap());
    let (paper, extended) = (temp("atd-paper-recipe"), temp("atd-extended"));
    let mut args = atd_args(data, extractor, paper.to_str().unwrap(), "2");
    args.extend(["--select-on", "clean"]);
    run(&args);
    let mut args = atd_args(data, extractor, extended.to_str().unwrap(), "2");
    args.extend([
        "--synthetic-outliers",
        "64",
        "--derived-outliers",
        "32",
        "--val-synthetic",
        "30",
        "--val-derived",
        "12",
    ]);
    run(&args);
    // The paper's recipe keeps its log and the reference's selection: clean AUROC on the held-out
    // outliers alone.
    for line in log_without_timing(&paper) {
        assert!(line.get("val_auroc_star-field").is_none(), "{line}");
        assert_eq!(line["val_selection_auroc"], line["val_auroc"]);
    }
    // The extended one scores each validation set, clean and attacked, and selects on the mean
    // of both over the held-out outliers and every set.
    for line in log_without_timing(&extended) {
        let both = |suffix: &str| {
            let (clean, attacked) = (format!("val_auroc{suffix}"), format!("val_pgd10_in_out_auroc{suffix}"));
            (line[&clean].as_f64().unwrap() + line[&attacked].as_f64().unwrap()) / 2.0
        };
        let sets = ["", "_star-field", "_cells", "_fractal-texture", "_pen-curves", "_zoom"];
        let mean = sets.iter().map(|s| both(s)).sum::<f64>() / sets.len() as f64;
        assert!((line["val_selection_auroc"].as_f64().unwrap() - mean).abs() < 1e-12, "{line}");
    }
    let (a, b) = (tensors(&paper.join("atd.safetensors")), tensors(&extended.join("atd.safetensors")));
    assert_ne!(
        a["discriminator.output.weight"], b["discriminator.output.weight"],
        "the extra outliers changed nothing"
    );
    let card = run(&["info", "--json", extended.join("atd.safetensors").to_str().unwrap()]);
    let card: Value = serde_json::from_str(&card).unwrap();
    let recipe = &card["training"]["recipe"];
    assert_eq!(
        (recipe["synthetic_outliers"].as_u64(), recipe["derived_outliers"].as_u64()),
        (Some(64), Some(32)),
        "{recipe}"
    );
    assert_eq!(recipe["select_on"], "clean-and-attacked", "{recipe}");
}

#[test]
fn init_continues_a_trained_detector_and_refuses_one_of_another_extractor() {
    let data = fixture_dir();
    let extractor = standard_extractor().join("extractor.safetensors");
    let (data, extractor) = (data.to_str().unwrap(), extractor.to_str().unwrap());
    let first = temp("atd-init-source");
    run(&atd_args(data, extractor, first.to_str().unwrap(), "1"));
    let source = first.join("atd.safetensors");
    // At learning rate 0 the continued run keeps exactly the weights it started from, and a
    // fresh run at learning rate 0 keeps its random ones.
    let continue_with = |name: &str, init: Option<&Path>| {
        let out = temp(name);
        let mut args = atd_args(data, extractor, out.to_str().unwrap(), "1");
        let lr = args.iter().position(|a| *a == "--lr").unwrap() + 1;
        args[lr] = "0";
        args.extend(["--val-attack-steps", "3"]);
        if let Some(init) = init {
            args.extend(["--init", init.to_str().unwrap()]);
        }
        (atd(&args), out)
    };
    let ((ok, _, err), continued) = continue_with("atd-init", Some(&source));
    assert!(ok, "{err}");
    let ((ok, _, err), fresh) = continue_with("atd-init-fresh", None);
    assert!(ok, "{err}");
    let key = "discriminator.output.weight";
    let (source_w, continued_w, fresh_w) =
        (tensors(&source), tensors(&continued.join("atd.safetensors")), tensors(&fresh.join("atd.safetensors")));
    assert_eq!(continued_w[key], source_w[key]);
    assert_ne!(fresh_w[key], source_w[key]);
    let log = log_without_timing(&continued);
    assert!(log[0]["val_pgd3_in_out_auroc"].is_f64(), "{:?}", log[0]);
    assert!(log[0].get("val_pgd10_in_out_auroc").is_none(), "{:?}", log[0]);

    // A discriminator of other features, and a file without one, are refused by name.
    let mut other = atd_core::Weights::from_bytes(&std::fs::read(&source).unwrap()).unwrap();
    other.tensors.get_mut("extractor.stem.weight").unwrap().data[0] += 0.5;
    let other_path = first.join("other-extractor.safetensors");
    std::fs::write(&other_path, atd_core::weights::write_weights(&other.card, &other.tensors)).unwrap();
    let ((ok, _, err), _) = continue_with("atd-init-other", Some(&other_path));
    assert!(!ok && err.contains("another extractor"), "{err}");
    let ((ok, _, err), _) = continue_with("atd-init-extractor", Some(Path::new(extractor)));
    assert!(!ok && err.contains("no discriminator"), "{err}");
}

#[test]
fn discriminator_widths_are_a_recipe_choice() {
    let data = fixture_dir();
    let extractor = standard_extractor().join("extractor.safetensors");
    let (data, extractor) = (data.to_str().unwrap(), extractor.to_str().unwrap());
    let train_with = |name: &str, extra: &[&str]| {
        let out = temp(name);
        let mut args = atd_args(data, extractor, out.to_str().unwrap(), "1");
        args.extend(extra);
        (atd(&args), out)
    };
    let ((ok, _, err), out) = train_with("atd-widths", &["--discriminator-widths", "24,12"]);
    assert!(ok, "{err}");
    let file = out.join("atd.safetensors");
    let weights = atd_core::Weights::from_bytes(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(weights.card.discriminator.as_ref().unwrap().widths, vec![24, 12]);
    assert_eq!(weights.tensors["discriminator.output.weight"].data.len(), 12, "one logit from 12 hidden units");
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/check-images/digit-0-chalk.png");
    let scored = run(&["score", file.to_str().unwrap(), image.to_str().unwrap()]);
    assert!(scored.lines().nth(1).is_some_and(|l| l.contains("digit-0-chalk.png")), "{scored}");

    let ((ok, _, err), _) = train_with("atd-widths-zero", &["--discriminator-widths", "16,0"]);
    assert!(!ok && err.contains("discriminator widths must be non-empty and positive"), "{err}");
    let ((ok, _, err), _) =
        train_with("atd-widths-init", &["--discriminator-widths", "16", "--init", file.to_str().unwrap()]);
    assert!(!ok && err.contains("cannot be combined with --init"), "{err}");
}

#[test]
fn weight_averaging_is_what_gets_exported_and_resumes_exactly() {
    let data = fixture_dir();
    let extractor = standard_extractor().join("extractor.safetensors");
    let (data, extractor) = (data.to_str().unwrap(), extractor.to_str().unwrap());
    let train_with = |out: &Path, extra: &[&str]| {
        let mut args = atd_args(data, extractor, out.to_str().unwrap(), "2");
        args.extend(extra);
        atd(&args)
    };
    let exported = |out: &Path| tensors(&out.join("atd.safetensors"));
    let (plain, no_decay, averaged, resumed) =
        (temp("atd-ema-plain"), temp("atd-ema-0"), temp("atd-ema-0.9"), temp("atd-ema-resumed"));
    for (out, extra) in [(&plain, &[][..]), (&no_decay, &["--ema", "0"]), (&averaged, &["--ema", "0.9"])] {
        let (ok, _, err) = train_with(out, extra);
        assert!(ok, "{err}");
    }
    // Decay 0 keeps the last iterate: the plain run's file. The average is another one.
    assert_eq!(exported(&no_decay), exported(&plain));
    let key = "discriminator.output.weight";
    assert_ne!(exported(&averaged)[key], exported(&plain)[key], "the average was not exported");
    assert_eq!(
        exported(&averaged)["extractor.blocks.0.conv1.weight"],
        exported(&plain)["extractor.blocks.0.conv1.weight"]
    );

    let (ok, _, err) = train_with(&resumed, &["--ema", "0.9", "--stop-after", "1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = train_with(&resumed, &["--ema", "0.9", "--resume"]);
    assert!(ok, "{err}");
    assert_eq!(log_without_timing(&resumed), log_without_timing(&averaged));
    assert_eq!(exported(&resumed), exported(&averaged));

    let (ok, _, err) = train_with(&temp("atd-ema-bad"), &["--ema", "1"]);
    assert!(!ok && err.contains("a decay is in [0, 1)"), "{err}");
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
    let margin =
        |setting| toy::margin(&toy::decision_grid(&toy::train(&data, setting, 300, 0), side), side, &data.closed, true);
    let [standard, closed, _, _, atd] = toy::SETTINGS;
    let (m_standard, m_closed, m_atd) = (margin(standard), margin(closed), margin(atd));
    eprintln!(
        "closed-set margin: standard {m_standard:.3}, closed attacked {m_closed:.3}, closed and open attacked {m_atd:.3}"
    );
    assert!(
        m_closed > 1.5 * m_standard,
        "attacking the closed set did not widen its margin: {m_standard} -> {m_closed}"
    );
    assert!(m_atd > 1.5 * m_standard, "ATD's setting did not widen the closed-set margin: {m_standard} -> {m_atd}");
}

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

fn tiny_eval_data<'a>(data: &'a str, limit: &'a str) -> [&'a str; 10] {
    ["--data-dir", data, "--in", "cifar10-tiny.bin", "--out", "ood-tiny.bin", "--limit", limit, "--out-limit", limit]
}

fn check_args<'a>(data: &'a str, weights: &'a str) -> Vec<&'a str> {
    let mut args = vec!["check", weights, "--detector", "msp", "--steps", "4"];
    args.extend(tiny_eval_data(data, "40"));
    args
}

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

#[test]
fn report_writes_the_tables_and_figures() {
    let data = fixture_dir();
    let standard = standard_extractor().join("extractor.safetensors");
    let atd_run = temp("report-atd");
    // At the other tests' learning rate three epochs on the fixtures leave every image at the
    // same score (AUROC 0.5 in every setting); this ATD must separate for its rows to be checked.
    let mut args = atd_args(data.to_str().unwrap(), standard.to_str().unwrap(), atd_run.to_str().unwrap(), "3");
    let lr = args.iter().position(|a| *a == "--lr").unwrap() + 1;
    args[lr] = "3e-2";
    run(&args);
    // A second, different ATD stands in for the paper-recipe one.
    let paper_run = temp("report-atd-paper");
    run(&atd_args(data.to_str().unwrap(), standard.to_str().unwrap(), paper_run.to_str().unwrap(), "1"));
    let page = temp("report").join("results.md");
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    let cache = temp("report-cache");
    let report_args = |cache: &Path| -> Vec<String> {
        [
            "report",
            "--atd",
            atd_run.join("atd.safetensors").to_str().unwrap(),
            "--standard",
            standard.to_str().unwrap(),
            "--paper-recipe",
            paper_run.join("atd.safetensors").to_str().unwrap(),
            "--page",
            page.to_str().unwrap(),
            "--steps",
            "2",
            "--baseline-steps",
            "2",
            "--sweep-limit",
            "16",
            "--sweep-out-limit",
            "16",
            "--sweep-steps",
            "2",
            "--cache-dir",
            cache.to_str().unwrap(),
        ]
        .into_iter()
        .chain(tiny_eval_data(data.to_str().unwrap(), "24"))
        .map(str::to_string)
        .collect()
    };
    let report = || run(&report_args(&cache).iter().map(String::as_str).collect::<Vec<_>>());
    let out = report();
    assert!(out.contains("wrote") && out.contains("(0 per-set results read from"), "{out}");
    let numbers_without_timing = || {
        let mut v: Value =
            serde_json::from_str(&std::fs::read_to_string(page.with_extension("json")).unwrap()).unwrap();
        strip_seconds(&mut v);
        v
    };
    let md = std::fs::read_to_string(&page).unwrap();
    for needle in [
        "## Table 1",
        "| ATD (atd) | APGD-2",
        "| ATD, paper recipe (atd) | PGD-2",
        "### ATD, paper recipe, per OOD set (per-image worst case",
        "--paper-recipe ",
        // The baselines on the ATD file's extractor, named by its training method (standard here).
        "| STANDARD (openmax)",
        "its extractor was trained by STANDARD",
        "| standard (msp)",
        "0.943 / 0.837 / 0.862 / 0.693",
        "## Table 2",
        "## Table 4",
        "PASS",
        "figures/roc.png",
    ] {
        assert!(md.contains(needle), "results.md lacks {needle:?}:\n{md}");
    }
    for figure in ["auroc-vs-eps", "histogram-atd", "histogram-standard-msp", "roc"] {
        let path = page.parent().unwrap().join("figures").join(format!("{figure}.png"));
        let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
        // Not blank: a figure has many colours.
        let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 20, "{figure} has {} colours", colours.len());
    }
    let numbers: Value = serde_json::from_str(&std::fs::read_to_string(page.with_extension("json")).unwrap()).unwrap();
    assert!(numbers["table1"].as_array().unwrap().len() >= 10, "ATD x3, the paper recipe x3 and the baselines");
    // ATD's rows measure a detector: it separates clean images, and the end-to-end attack on
    // both sides takes some of that away.
    let atd_pgd = numbers["table1"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "ATD" && r["evaluation"]["attack"] == "PGD-2")
        .expect("ATD's PGD row");
    let auroc = |k: usize| atd_pgd["evaluation"]["average"][k]["auroc"].as_f64().unwrap();
    assert!(auroc(0) > 0.6 && auroc(3) < auroc(0), "ATD clean {} / In-and-Out {}", auroc(0), auroc(3));

    // `atd eval --cache` shares the report's entries: an evaluation the report made (here the
    // standard file's Mahalanobis detector under PGD-2) is read back, not recomputed, and gives
    // the report's numbers.
    let eval_json = temp("report-eval").with_extension("json");
    let mut eval_args: Vec<String> = vec![
        "eval".into(),
        standard.to_str().unwrap().into(),
        "--detector=md".into(),
        "--steps=2".into(),
        format!("--cache={}", cache.display()),
        format!("--json={}", eval_json.display()),
    ];
    eval_args.extend(tiny_eval_data(data.to_str().unwrap(), "24").map(str::to_string));
    let out = run(&eval_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("(2 per-set results read from"), "{out}");
    let mut evaluated: Value = serde_json::from_str(&std::fs::read_to_string(&eval_json).unwrap()).unwrap();
    strip_seconds(&mut evaluated);
    let first_numbers = numbers_without_timing();
    let reported = first_numbers["table1"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "standard" && r["evaluation"]["detector"] == "md")
        .expect("the standard MD row");
    // The eps of the report's page went through f64; compare it as the f32 it is.
    let eps = |v: &Value| v["eps"].as_f64().unwrap() as f32;
    let without_eps = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("eps");
        v
    };
    assert_eq!(eps(&evaluated[0]), eps(&reported["evaluation"]));
    assert_eq!(without_eps(&evaluated[0]), without_eps(&reported["evaluation"]), "eval --cache vs the report");

    // Rerun (as after an interruption) with one model's cache file damaged: that model's sets
    // are recomputed, every other one is read back, and the numbers are the same.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert!((2..=4).contains(&files.len()), "one cache file per evaluated model: {files:?}");
    files.sort();
    std::fs::write(&files[0], "{ truncated").unwrap();
    let kept = EvalCache::new(cache.clone());
    assert!(kept.entries().is_err(), "a damaged file must not count as whole");
    std::fs::remove_file(&files[0]).unwrap();
    let kept = kept.entries().unwrap();
    std::fs::write(&files[0], "{ truncated").unwrap();
    let out = report();
    let resumed = format!("({kept} per-set results read from");
    assert!(out.contains(&resumed), "expected {resumed:?} in {out}");
    assert_eq!(numbers_without_timing(), first_numbers);
    assert!(std::fs::read_to_string(&page).unwrap().contains("resumed from the cache"));

    // Killed at random moments (mid-evaluation, mid-write) on a fresh cache, then finished:
    // every entry left is whole, and the numbers are those of the uninterrupted run.
    let killed_cache = temp("report-cache-killed");
    let args = report_args(&killed_cache);
    run_with_kills(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &killed_cache,
        cache_entries_whole,
        41,
        8,
        2500,
    );
    assert_eq!(numbers_without_timing(), first_numbers);
}

/// `v` without its timing fields (every "seconds"), at any depth.
fn strip_seconds(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("seconds");
            m.values_mut().for_each(strip_seconds);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_seconds),
        _ => {}
    }
}

/// Every file of a report cache reads back whole (a kill never leaves a torn one).
fn cache_entries_whole(cache: &Path, when: &str) {
    if let Err(e) = EvalCache::new(cache.to_path_buf()).entries() {
        panic!("{when}: torn cache file: {e:#}");
    }
}
