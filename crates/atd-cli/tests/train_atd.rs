//! `atd train atd` end to end on the small fixtures: the loss falls and a stopped run resumes
//! exactly; outliers, initialisation, widths, weight averaging and the frozen generator do what
//! their flags say.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

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

    assert_stopped_and_resumed_run_matches(&train_with, &["--ema", "0.9"], &resumed, &averaged, "atd.safetensors");

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
fn opengan_pixel_trains_its_backbone_and_image_generator_on_pixels_and_resumes_exactly() {
    let data = fixture_dir();
    let data = data.to_str().unwrap();
    // atd_args without the extractor file: --pixel builds its own backbone.
    let train_with = |out: &Path, extra: &[&str]| {
        let mut args = atd_args(data, "", out.to_str().unwrap(), "2");
        args.drain(2..4);
        if extra.contains(&"--lr") {
            let lr = args.iter().position(|a| *a == "--lr").unwrap();
            args.drain(lr..lr + 2);
        }
        args.extend(["--pixel", "tiny", "--no-attack"]);
        args.extend(extra);
        atd(&args)
    };
    let exported = |out: &Path| tensors(&out.join("atd.safetensors"));
    let (trained, frozen, untouched, resumed) =
        (temp("pixel-trained"), temp("pixel-frozen"), temp("pixel-lr0"), temp("pixel-resumed"));
    for (out, extra) in [
        (&trained, &["--generator", "trained"][..]),
        (&frozen, &["--generator", "frozen"]),
        (&untouched, &["--generator", "trained", "--lr", "0"]),
    ] {
        let (ok, _, err) = train_with(out, extra);
        assert!(ok, "{err}");
    }
    // D trains its backbone on pixels (the learning-rate-0 run exports the initial weights),
    // and a trained generator changes the fakes D sees, so its losses.
    let key = "extractor.blocks.0.conv1.weight";
    assert_ne!(exported(&trained)[key], exported(&untouched)[key], "the backbone did not train");
    assert_ne!(losses(&trained)[1], losses(&frozen)[1], "the generator did not train");
    // The file is an ATD-format discriminator on its own backbone: no classifier, no generator.
    let file = exported(&trained);
    assert!(file.keys().all(|k| k.starts_with("extractor.") || k.starts_with("discriminator.")), "{:?}", file.keys());
    let weights = trained.join("atd.safetensors");
    let (ok, json, err) = atd(&["info", "--json", weights.to_str().unwrap()]);
    assert!(ok, "{err}");
    let card: Value = serde_json::from_str(&json).unwrap();
    assert!(card["classifier"].is_null() && card["generator"].is_null(), "{card}");
    assert_eq!(card["training"]["recipe"]["pixel"], "tiny");
    let mut eval = vec!["eval", weights.to_str().unwrap(), "--steps", "2"];
    eval.extend(tiny_eval_data(data, "16"));
    let (ok, out, err) = atd(&eval);
    assert!(ok && out.contains("In-and-Out"), "{out}{err}");

    // The image generator and its optimizer are checkpointed with D.
    assert_stopped_and_resumed_run_matches(
        &train_with,
        &["--generator", "trained"],
        &resumed,
        &trained,
        "atd.safetensors",
    );

    let extractor = standard_extractor().join("extractor.safetensors");
    let (ok, _, err) = train_with(&temp("pixel-both"), &["--extractor", extractor.to_str().unwrap()]);
    assert!(!ok && err.contains("--extractor"), "{err}");

    // Table 3's pixel variants: attacked like ATD, and with the generated images attacked too
    // (same seed and data, so only that attack separates the two discriminators).
    let attacked_with = |out: &Path, extra: &[&str]| {
        let mut args = atd_args(data, "", out.to_str().unwrap(), "1");
        args.drain(2..4);
        args.extend(["--pixel", "tiny"]);
        args.extend(extra);
        let (ok, stdout, err) = atd(&args);
        assert!(ok, "{err}");
        (stdout + &err, exported(out))
    };
    let (_, attacked) = attacked_with(&temp("pixel-attacked"), &[]);
    let (said, both) = attacked_with(&temp("pixel-attack-generated"), &["--attack-generated", "0.03"]);
    assert!(said.contains("generated images attacked too"), "{said}");
    let key = "discriminator.output.weight";
    assert_ne!(attacked[key], both[key], "attacking the generated images changed nothing");
}
