//! `atd report` on the fixtures: tables, figures, the cache that resumes it, and kills.

mod common;

use std::path::{Path, PathBuf};

use atd_train::eval::EvalCache;
use common::*;
use serde_json::Value;

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
    // The paper's baselines, one epoch on 64 images each: classifiers for Table 1 (AOE; OSAD,
    // also in Table 4) and Table 5 (ATOM), OpenGAN-fea's discriminator, and one file asked for
    // but not trained.
    let classifier = |method: &str| {
        let out = temp(&format!("report-{method}"));
        let mut args = extractor_args(data.to_str().unwrap(), out.to_str().unwrap(), "1");
        args.extend(["--method", method, "--attack-steps", "2", "--outliers", "ood-tiny.bin", "--train-limit", "64"]);
        run(&args);
        out.join("extractor.safetensors")
    };
    let (aoe, osad, atom) = (classifier("aoe"), classifier("osad"), classifier("atom"));
    let opengan = temp("report-opengan-fea");
    let mut opengan_args = atd_args(data.to_str().unwrap(), standard.to_str().unwrap(), opengan.to_str().unwrap(), "1");
    opengan_args.push("--no-attack");
    run(&opengan_args);
    let opengan = opengan.join("atd.safetensors");
    let untrained = temp("report-hat").join("extractor.safetensors");
    let page = temp("report").join("results.md");
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    let cache = temp("report-cache");
    let no_ablation = temp("report-ablation").join("ablation.json");
    let report_args = |cache: &Path| -> Vec<String> {
        [
            "report",
            "--atd",
            atd_run.join("atd.safetensors").to_str().unwrap(),
            "--standard",
            standard.to_str().unwrap(),
            "--paper-recipe",
            paper_run.join("atd.safetensors").to_str().unwrap(),
            "--baseline",
            aoe.to_str().unwrap(),
            "--baseline",
            untrained.to_str().unwrap(),
            "--baseline",
            osad.to_str().unwrap(),
            "--baseline",
            opengan.to_str().unwrap(),
            "--atom",
            atom.to_str().unwrap(),
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
            "--ablation",
            no_ablation.to_str().unwrap(),
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
        // The baseline's rows beside the paper's AOE rows; the paper's AT rows beside none of
        // ours (the ATD file's extractor is standard here), each with the reason.
        "| AOE (md) | PGD-2 |",
        "0.797 / 0.528 / 0.586 / 0.298 |",
        "| AT (msp) | not measured: no AT classifier",
        "| ViT (md) | not measured: needs an ImageNet-pretrained ViT",
        "| OSAD (openmax) | PGD-2 |",
        "| 0.827 / 0.544 / 0.554 / 0.251 |",
        "--baseline ",
        "no CIFAR-100 training split",
        "## Table 2",
        // Transfers from the paper's sources, with its numbers beside ours where it has them.
        "| AOE (openmax) | ",
        "| 0.907 / 0.925 / 0.892 |",
        "| STANDARD (md) | ",
        "| HAT (openmax): not measured",
        // OpenGAN-fea: a discriminator, on its own score only.
        "| OpenGAN-fea (atd) | PGD-2 |",
        "| OpenGAN-fea (atd) | 0.",
        "| 0.930 / 0.940 / 0.928 |",
        // The paper's OpenGAN rows were scored in training mode, ours in eval mode: said once.
        "The paper scored its OpenGAN rows in training mode",
        "## Table 4",
        // ATD and OSAD each attacked on the classifier and on the detector, beside the paper.
        "| ATD (atd) | PGD-2 on the classifier |",
        "| 0.622 / 0.918 |",
        "| OSAD (openmax) | PGD-2 on the classifier |",
        "| OSAD (openmax) | PGD-2 | ",
        "| 0.777 / 0.544 |",
        // ATOM on its outlier class under ATD's attacks, beside ATD and the paper.
        "## Table 5",
        "| ATOM (outlier-class) | APGD-2 |",
        "| 0.983 / 0.156 / 0.447 / 0.067 |",
        "--atom ",
        "PASS",
        "figures/roc.png",
    ] {
        assert!(md.contains(needle), "results.md lacks {needle:?}:\n{md}");
    }
    assert!(md.contains(&format!("Not trained yet: `{}`", untrained.display())), "{md}");
    assert!(
        md.contains(&format!(
            "## Table 3: ablation of ATD (AUROC)\n\nNot measured: `{}` does not exist",
            no_ablation.display()
        )),
        "{md}"
    );
    assert!(!md.contains("| OpenGAN-fea (msp)"), "a discriminator baseline is reported on its own score only:\n{md}");
    for figure in ["auroc-vs-eps", "histogram-atd", "histogram-standard-msp", "roc"] {
        let path = page.parent().unwrap().join("figures").join(format!("{figure}.png"));
        let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
        // Not blank: a figure has many colours.
        let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 20, "{figure} has {} colours", colours.len());
    }
    let numbers: Value = serde_json::from_str(&std::fs::read_to_string(page.with_extension("json")).unwrap()).unwrap();
    assert!(numbers["table1"].as_array().unwrap().len() >= 10, "ATD x3, the paper recipe x3 and the baselines");
    // Every row names the file it comes from, by path and content digest (what `atd digest`
    // prints), with its method and recipe; rows of one file share its digest, other files differ.
    let digest_of =
        |path: &Path| run(&["digest", path.to_str().unwrap()]).split_whitespace().next().unwrap().to_string();
    let files = [
        ("ATD", atd_run.join("atd.safetensors")),
        ("ATD, paper recipe", paper_run.join("atd.safetensors")),
        ("standard", standard.clone()),
        ("AOE", aoe.clone()),
        ("OpenGAN-fea", opengan.clone()),
        ("OSAD", osad.clone()),
    ];
    assert_eq!(
        numbers["table5_atom"]["evaluations"].as_array().map(Vec::len),
        Some(3),
        "PGD, APGD and their worst case"
    );
    assert_eq!(numbers["table5_atom"]["source"]["file"], atom.to_str().unwrap());
    assert!(md.contains(&format!("| ATOM | `{}` |", atom.display())), "the models table lists ATOM");
    for row in numbers["table1"].as_array().unwrap() {
        let source = &row["source"];
        let (_, file) =
            files.iter().find(|(_, f)| source["file"] == f.to_str().unwrap()).unwrap_or_else(|| panic!("{row}"));
        assert_eq!(source["digest"], digest_of(file), "{}", row["model"]);
        assert!(source["method"].is_string() && source["recipe"]["epochs"].is_number(), "{source}");
    }
    for (name, file) in &files {
        let prefix = &digest_of(file)[..16];
        assert!(
            md.contains(&format!("| {name} | `{}` | `{prefix}` |", file.display())),
            "results.md does not list {name}:\n{md}"
        );
    }
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
    assert!((2..=8).contains(&files.len()), "one cache file per evaluated model: {files:?}");
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
