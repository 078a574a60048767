//! The report page: every table of `atd report` as Markdown.

use std::fmt::Write as _;

use atd_core::attack::Setting;
use atd_train::eval::{EvalData, Evaluation};

use super::*;
use crate::check;

/// The ATD evaluations that get a per-OOD-set table (the shipped one's, and the paper recipe's),
/// and the name of its extractor.
pub(super) struct Tables<'a> {
    pub extractor: &'a str,
    pub atd: &'a [Evaluation],
    pub paper_recipe: Option<&'a [Evaluation]>,
    /// Baseline files asked for that do not exist yet.
    pub untrained: &'a [std::path::PathBuf],
    /// ATOM's evaluations under ATD's attacks (Table 5), when its file exists.
    pub atom: Option<&'a [Evaluation]>,
    /// `pkg-scripts/ablation.sh`'s results (Table 3), when they exist.
    pub ablation: Option<&'a serde_json::Value>,
}

/// `pkg-scripts/ablation.sh`'s summary (docs/ablation.json), or None when it was never run.
pub(super) fn read_ablation(path: &std::path::Path) -> anyhow::Result<Option<serde_json::Value>> {
    use anyhow::Context as _;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the JSON pkg-scripts/ablation.sh writes", path.display()))?;
    table3(&value, path)
        .with_context(|| format!("{}: not the summary pkg-scripts/ablation.sh writes", path.display()))?;
    Ok(Some(value))
}

/// An AUROC of the ablation summary as the tables print it.
fn three_places(x: &serde_json::Value) -> anyhow::Result<String> {
    x.as_f64().map(|a| format!("{a:.3}")).ok_or_else(|| anyhow::anyhow!("an AUROC is not a number: {x}"))
}

/// Table 3 from the ablation summary at `path`: one row per measured variant (its file, digest and
/// mean AUROC in the four settings, the paper's row beside it), then the variants not measured.
pub(super) fn table3(ablation: &serde_json::Value, path: &std::path::Path) -> anyhow::Result<String> {
    let field = |v: &serde_json::Value, key: &str| -> anyhow::Result<String> {
        v[key].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("no string field {key:?}"))
    };
    let eval = &ablation["evaluation"];
    let mut s = format!(
        "Measured by `pkg-scripts/ablation.sh` on {} ({}), not by this run: each variant trained with `atd train atd {}` on `{}`'s extractor unless it says otherwise, then attacked end to end with PGD-{} on the first {} CIFAR-10 test images and the first {} of each OOD set. Mean AUROC over the OOD sets; the paper's Table 3 (HAT extractor, full training) beside it.\n\n\
         | variant | file (digest) | Clean | In | Out | In-and-Out | paper: Clean / In / Out / In-and-Out |\n|---|---|---|---|---|---|---|\n",
        field(ablation, "date")?,
        path.display(),
        field(ablation, "recipe")?,
        field(ablation, "extractor")?,
        eval["steps"],
        eval["limit"],
        eval["out_limit"],
    );
    let variants = ablation["variants"].as_array().ok_or_else(|| anyhow::anyhow!("no variants list"))?;
    for v in variants {
        let average = v["evaluation"]["average"].as_array().filter(|a| a.len() == 4);
        let average = average.ok_or_else(|| anyhow::anyhow!("a variant without four averaged settings"))?;
        let auroc = average.iter().map(|m| three_places(&m["auroc"])).collect::<anyhow::Result<Vec<_>>>()?;
        let paper = match v["paper"].as_array() {
            Some(p) => p.iter().map(three_places).collect::<anyhow::Result<Vec<_>>>()?.join(" / "),
            None => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {} | `{}` (`{}`) | {} | {paper} |",
            field(v, "description")?,
            field(v, "file")?,
            field(v, "digest")?,
            auroc.join(" | ")
        );
    }
    let pending: Vec<&str> = ablation["pending"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
    if !pending.is_empty() {
        let _ = writeln!(s, "\nNot measured yet (rerun `pkg-scripts/ablation.sh`): {}.", pending.join("; "));
    }
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn markdown(
    opts: &ReportOptions,
    data: &EvalData,
    rows: &[Row],
    transfers: &[Evaluation],
    table4: &[Table4Row],
    atd_tables: &Tables,
    checks: &[check::Check],
    sweep: &[(String, Vec<(f64, f64)>)],
    run_time: &RunTime,
) -> String {
    let eps255 = opts.eps * 255.0;
    let mut s = String::new();
    let sets: Vec<String> = data.out_sets.iter().map(|(n, set)| format!("{n} ({})", set.len())).collect();
    let _ = writeln!(s, "# Results\n");
    let _ = writeln!(
        s,
        "Written by `atd report` (see the command line below) in {:.0} minutes on {} with Burn's flex CPU backend. \
         Every number on this page comes from that run{}.\n",
        run_time.seconds / 60.0,
        hardware(),
        match run_time.cached {
            0 => String::new(),
            n => format!(
                " ({n} of its per-set results were resumed from the cache of earlier runs of the same command on the same files, possibly on another machine; their times are those of those runs)"
            ),
        }
    );
    let _ = writeln!(
        s,
        "- **Command:** `atd report --steps {} --baseline-steps {} --restarts {} --sweep-limit {} --sweep-out-limit {} --sweep-steps {} --limit {} --out-limit {}{}`",
        opts.steps,
        opts.baseline_steps,
        opts.restarts,
        opts.sweep_limit,
        opts.sweep_out_limit,
        opts.sweep_steps,
        data.in_set.len(),
        data.out_sets.first().map(|(_, s)| s.len()).unwrap_or(0),
        opts.paper_recipe.as_ref().map(|p| format!(" --paper-recipe {}", p.display())).unwrap_or_default()
            + &if opts.baselines.iter().eq(BASELINES.iter().map(Path::new)) {
                String::new()
            } else {
                opts.baselines.iter().map(|p| format!(" --baseline {}", p.display())).collect()
            }
            + &if opts.atom == Path::new(ATOM) { String::new() } else { format!(" --atom {}", opts.atom.display()) }
    );
    let _ = writeln!(
        s,
        "- **Models:** ATD {} (its extractor was trained by {robust}; the {robust} MSP/MD/RMD/OpenMax rows are those detectors on it), standard {}, and the robust baselines {}. `atd info <file>` prints each one's recipe and validation numbers.",
        file_line(&opts.atd),
        file_line(&opts.standard),
        opts.baselines.iter().filter(|p| p.exists()).map(|p| file_line(p)).collect::<Vec<_>>().join(", "),
        robust = atd_tables.extractor,
    );
    if let Some(path) = &opts.paper_recipe {
        let _ = writeln!(
            s,
            "- **{PAPER_RECIPE}:** {}: the same extractor and ATD training with Food-101 as its only outliers (the paper's recipe; the ATD above adds synthetic outliers).",
            file_line(path)
        );
    }
    let _ = writeln!(
        s,
        "- **Data:** in-distribution: the first {} images of the CIFAR-10 test set; OOD: the first images of {}.",
        data.in_set.len(),
        sets.join(", ")
    );
    let _ = writeln!(
        s,
        "- **Attacks:** L-inf, eps {eps255:.0}/255, end to end on each detector's score (in-distribution pushed down, OOD up), models in eval mode. ATD: PGD-{0} (step 2.5 eps/{0}, random start) and APGD-{0} (Croce and Hein 2020), {1} restart(s), and their per-image worst case. Baselines: PGD-{2} as in the paper's Table 1.\n",
        opts.steps, opts.restarts, opts.baseline_steps
    );

    let _ = writeln!(s, "## Table 1: AUROC under attack (mean over the OOD sets)\n");
    let _ = writeln!(
        s,
        "| model (detector) | attack | Clean | In | Out | In-and-Out | paper: Clean / In / Out / In-and-Out | seconds |\n|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let paper = paper_row(&r.method, r.eval.detector)
            .map(|p| format!("{:.3} / {:.3} / {:.3} / {:.3}", p[0], p[1], p[2], p[3]))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "| {} ({}) | {} |{} {paper} | {:.0} |",
            r.model,
            r.eval.detector.name(),
            r.eval.attack,
            auroc_cells(&r.eval),
            r.eval.seconds
        );
    }
    // The paper's rows this run has no file for, with the reason.
    for (method, detector, p) in PAPER_TABLE1 {
        if !rows.iter().any(|r| r.method == method) {
            let _ = writeln!(
                s,
                "| {method} ({}) | not measured: {} | - | - | - | - | {:.3} / {:.3} / {:.3} / {:.3} | - |",
                detector.name(),
                not_measured_reason(method),
                p[0],
                p[1],
                p[2],
                p[3]
            );
        }
    }
    for path in atd_tables.untrained {
        let _ = writeln!(s, "\nNot trained yet: `{}` (`pkg-scripts/train-baselines.sh` trains it).", path.display());
    }
    let _ = writeln!(
        s,
        "\nThe paper's CIFAR-100 columns (CIFAR-100 as the in-distribution set) are not reproduced: the data pack has no CIFAR-100 training split."
    );
    if rows.iter().any(|r| r.method.starts_with("OpenGAN")) {
        // The paper's Sec. 4.1: OpenGAN's own guideline scores in training mode, which the paper
        // kept for its OpenGAN rows and calls a leak between the images of a batch.
        let _ = writeln!(
            s,
            "\nThe paper scored its OpenGAN rows in training mode, as OpenGAN's code does (BatchNorm statistics from the batch being scored, \
             which the paper notes leaks information between the images scored together); every row here, OpenGAN's included, is scored \
             in eval mode, one image independent of the others."
        );
    }
    let _ = writeln!(
        s,
        "\nThe paper's models are PreActResNet-18 extractors trained for many GPU hours; ours are the small CPU-trained models \
         described in docs/training.md, so our numbers are far from the paper's. What carries over is the comparison between detectors. \
         In-and-Out AUROC as a fraction of the clean AUROC, in this run: {}.\n",
        rows.iter()
            .map(|r| format!(
                "{} ({}) {:.0}%",
                r.model,
                r.eval.detector.name(),
                100.0 * r.eval.auroc(Setting::InAndOut) / r.eval.auroc(Setting::Clean).max(1e-9)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let worst = atd_tables.atd.last().expect("ATD was evaluated");
    let _ = writeln!(s, "### ATD per OOD set ({})\n\n{}", worst.attack, worst.markdown());
    if let Some(last) = atd_tables.paper_recipe.and_then(|runs| runs.last()) {
        let _ = writeln!(s, "### {PAPER_RECIPE}, per OOD set ({})\n\n{}", last.attack, last.markdown());
    }

    let _ = writeln!(s, "## Table 2: FGSM transferred from other detectors to ATD (AUROC)\n");
    let _ = writeln!(s, "| source | In | Out | In-and-Out | paper: In / Out / In-and-Out |\n|---|---|---|---|---|");
    for t in transfers {
        let source = t.transferred_from.as_deref().unwrap_or(&t.attack);
        let paper = PAPER_TABLE2
            .iter()
            .find(|(m, d, _)| source == format!("{m} ({})", d.name()))
            .map(|(_, _, p)| format!("{:.3} / {:.3} / {:.3}", p[0], p[1], p[2]))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "| {source} | {:.3} | {:.3} | {:.3} | {paper} |",
            t.auroc(Setting::In),
            t.auroc(Setting::Out),
            t.auroc(Setting::InAndOut)
        );
    }
    for (method, detector, p) in PAPER_TABLE2 {
        let label = format!("{method} ({})", detector.name());
        if !transfers.iter().any(|t| t.transferred_from.as_deref() == Some(label.as_str())) {
            let _ = writeln!(
                s,
                "| {label}: not measured, {} | - | - | - | {:.3} / {:.3} / {:.3} |",
                not_measured_reason(method),
                p[0],
                p[1],
                p[2]
            );
        }
    }
    let white_box = worst.auroc(Setting::InAndOut);
    let weakest = transfers.iter().map(|t| t.auroc(Setting::InAndOut)).fold(f64::INFINITY, f64::min);
    let verdict = if weakest >= white_box {
        "every transferred attack hurt less than"
    } else {
        "a transferred attack hurt MORE than (suspect the white-box gradients)"
    };
    let _ = writeln!(
        s,
        "\nIn this run {verdict} the white-box worst case \
         (lowest transferred In-and-Out AUROC {weakest:.3}, white-box {white_box:.3}).\n"
    );

    let _ = writeln!(s, "## Table 3: ablation of ATD (AUROC)\n");
    match atd_tables.ablation {
        Some(ablation) => {
            let _ = writeln!(s, "{}", table3(ablation, &opts.ablation).expect("checked when read"));
        }
        None => {
            let _ = writeln!(
                s,
                "Not measured: `{}` does not exist. `pkg-scripts/ablation.sh` trains and attacks the variants (41 minutes on 2 cores) and writes it.\n",
                opts.ablation.display()
            );
        }
    }

    let _ = writeln!(s, "## Table 4: attacking the classifier vs attacking the detector\n");
    let acc = |a: Option<f64>| a.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        s,
        "| model (detector) | attack | classifier accuracy | In AUROC | In-and-Out AUROC | paper: accuracy / In AUROC |\n|---|---|---|---|---|---|"
    );
    for t in table4 {
        for (e, paper) in [(&t.classification, &t.paper[..2]), (&t.detection, &t.paper[2..])] {
            let _ = writeln!(
                s,
                "| {} | {} | {} (clean {}) | {:.3} | {:.3} | {:.3} / {:.3} |",
                t.model,
                e.attack,
                acc(e.accuracy_attacked),
                acc(e.accuracy_clean),
                e.auroc(Setting::In),
                e.auroc(Setting::InAndOut),
                paper[0],
                paper[1]
            );
        }
    }
    for t in table4 {
        let (c, d) = (&t.classification, &t.detection);
        let own_target = c.accuracy_attacked < d.accuracy_attacked && d.auroc(Setting::In) < c.auroc(Setting::In);
        let _ = writeln!(
            s,
            "\n{}: {}",
            t.model,
            if own_target {
                "each attack hurt what it targets most, as in the paper: judging a detector by a classification attack overstates its robustness."
            } else {
                "the attacks did not each hurt their own target most (see the numbers)."
            }
        );
    }
    if !table4.iter().any(|t| t.model.starts_with("OSAD")) {
        let _ = writeln!(
            s,
            "\nOSAD: not trained yet (`pkg-scripts/train-baselines.sh`); the paper's rows are 0.419 / 0.813 and 0.777 / 0.544."
        );
    }
    let _ = writeln!(
        s,
        "\nThe paper's Table 4 AUROC matches its Table 1 In column (in-distribution images attacked), so In is the column to compare.\n"
    );

    let _ = writeln!(s, "## Table 5: ATOM and ATD under the same attacks (AUROC)\n");
    let _ = writeln!(
        s,
        "| model (detector) | attack | Clean | In | Out | In-and-Out | paper: Clean / In / Out / In-and-Out |\n|---|---|---|---|---|---|---|"
    );
    let atom_rows = atd_tables.atom.unwrap_or_default().iter().map(|e| ("ATOM", e, "0.983 / 0.156 / 0.447 / 0.067"));
    for (name, e, paper) in atom_rows.chain([("ATD", worst, "0.943 / 0.837 / 0.862 / 0.693")]) {
        let _ = writeln!(s, "| {name} ({}) | {} |{} {paper} |", e.detector.name(), e.attack, auroc_cells(e));
    }
    let _ = writeln!(
        s,
        "\n{}\n",
        match atd_tables.atom {
            Some(_) => "ATOM (Chen et al. 2021) trains an outlier class on attacked outliers but never attacks in-distribution images; its In column shows what that leaves open.".to_string(),
            None => format!(
                "ATOM: not trained yet: `{}` (`pkg-scripts/train-baselines.sh` trains it); the paper's row is 0.983 / 0.156 / 0.447 / 0.067.",
                opts.atom.display()
            ),
        }
    );

    let _ = writeln!(
        s,
        "## Attack-strength checks on ATD (`atd check`, {} + {} per OOD set, PGD-{})\n",
        opts.sweep_limit, opts.sweep_out_limit, opts.sweep_steps
    );
    for c in checks {
        let _ = writeln!(s, "- **{}** {}: {}", if c.pass { "PASS" } else { "FAIL" }, c.name, c.detail);
    }
    let _ = writeln!(s, "\n## Figures\n");
    let _ = writeln!(
        s,
        "AUROC against eps (paper Fig. 1), In-and-Out, PGD-{}, on the check subset:\n\n![AUROC vs eps](figures/auroc-vs-eps.png)\n",
        opts.sweep_steps
    );
    for (name, points) in sweep {
        let _ = writeln!(
            s,
            "- {name}: {}",
            points.iter().map(|(e, a)| format!("{e:.0}/255 {a:.3}")).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nScore distributions, clean and with in and OOD attacked (paper Fig. 2):\n\n![ATD histograms](figures/histogram-atd.png)\n\n![standard MSP histograms](figures/histogram-standard-msp.png)\n"
    );
    let _ = writeln!(s, "ROC curves, all OOD sets pooled:\n\n![ROC](figures/roc.png)");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(variants: serde_json::Value) -> serde_json::Value {
        json!({
            "date": "2026-12-07", "extractor": "web/models/atd.safetensors", "recipe": "--epochs 5",
            "evaluation": {"limit": 200, "out_limit": 100, "steps": 100},
            "variants": variants, "pending": ["ATD with a trained generator"],
        })
    }

    fn variant(paper: serde_json::Value) -> serde_json::Value {
        let auroc = |a: f64| json!({"auroc": a, "fpr_at_95_tpr": 0.9, "aupr_in": 0.8, "aupr_out": 0.4});
        json!({
            "variant": "no-attack", "description": "no adversarial training", "file": "runs/no-attack/atd.safetensors",
            "digest": "0123456789abcdef", "paper": paper,
            "evaluation": {"average": [auroc(0.61), auroc(0.42), auroc(0.5), auroc(0.254)]},
        })
    }

    #[test]
    fn table3_prints_each_variant_with_its_file_and_the_paper_row_and_what_is_missing() {
        let path = std::path::Path::new("docs/ablation.json");
        let table = table3(&summary(json!([variant(json!([0.947, 0.741, 0.72, 0.511]))])), path).unwrap();
        assert!(
            table.contains("| no adversarial training | `runs/no-attack/atd.safetensors` (`0123456789abcdef`) | 0.610 | 0.420 | 0.500 | 0.254 | 0.947 / 0.741 / 0.720 / 0.511 |"),
            "{table}"
        );
        assert!(table.contains("PGD-100 on the first 200 CIFAR-10 test images and the first 100"), "{table}");
        assert!(
            table.contains("Not measured yet (rerun `pkg-scripts/ablation.sh`): ATD with a trained generator."),
            "{table}"
        );
        // A variant of ours with no paper counterpart.
        let table = table3(&summary(json!([variant(serde_json::Value::Null)])), path).unwrap();
        assert!(table.contains("| 0.254 | - |"), "{table}");
    }

    #[test]
    fn a_damaged_ablation_summary_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("atd-ablation-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ablation.json");
        assert!(read_ablation(&path).unwrap().is_none(), "a missing summary is not an error");
        let mut damaged = variant(serde_json::Value::Null);
        damaged["evaluation"]["average"] = json!([]);
        let mut paper_not_numbers = variant(json!(["0.9", 0.7, 0.6, 0.5]));
        paper_not_numbers["variant"] = json!("quoted");
        for text in [
            "{ truncated".to_string(),
            summary(json!([damaged])).to_string(),
            summary(json!([paper_not_numbers])).to_string(),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", read_ablation(&path).unwrap_err());
            assert!(err.contains("ablation.json") && err.contains("pkg-scripts/ablation.sh"), "{err}");
        }
        std::fs::write(&path, summary(json!([variant(serde_json::Value::Null)])).to_string()).unwrap();
        assert!(read_ablation(&path).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
