//! `atd report`: evaluate the shipped models and write `docs/results.md` (our Table 1 beside the
//! paper's, the transfer attacks of Table 2, the classification-vs-detection attacks of Table 4,
//! ATOM against ATD (Table 5),
//! the attack-strength checks) with its figures, and the numbers as JSON. Every number in it
//! comes from this run; the page says which data, models, attacks, N, hardware and time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use atd_core::attack::{AttackSpec, Setting};
use burn::tensor::Device;
use serde_json::json;

mod page;

use page::{Tables, markdown};

use crate::args::DataArgs;
use crate::check::{self, CheckOptions};
use crate::figures;
use atd_train::eval::{Attack, AttackKind, EvalCache, EvalData, Evaluation, SetScores, evaluate, evaluate_all};
use atd_train::pgd::PgdConfig;
use atd_train::{Backend, Detector, Model};

#[derive(Clone, Debug, clap::Args)]
pub struct ReportOptions {
    /// The ATD weights (extractor, classifier, baselines and discriminator).
    #[arg(long, default_value = "web/models/atd.safetensors")]
    pub atd: PathBuf,
    /// The standard (non-robust) extractor.
    #[arg(long, default_value = "web/models/standard.safetensors")]
    pub standard: PathBuf,
    /// Also an ATD trained by the paper's recipe (Food-101 as its only outliers), reported beside
    /// `--atd` under the same attacks (`train-default.sh` trains one into checkpoints/atd-paper/).
    #[arg(long)]
    pub paper_recipe: Option<PathBuf>,
    /// The paper's baselines beside the ATD file's extractor (`pkg-scripts/train-baselines.sh`
    /// trains them): a robust classifier is reported under MSP, MD, RMD and OpenMax, a
    /// discriminator (OpenGAN-fea) under its own score, each also as a Table 2 transfer source;
    /// one not trained yet is listed as such.
    #[arg(long = "baseline", default_values = BASELINES)]
    pub baselines: Vec<PathBuf>,
    /// An ATOM classifier (`atd train extractor --method atom`; `pkg-scripts/train-baselines.sh`
    /// trains it) for Table 5, under ATD's attacks; listed as not trained when it does not exist.
    #[arg(long, default_value = ATOM)]
    pub atom: PathBuf,
    /// The markdown page; figures go to `figures/` beside it, the numbers to `results.json`.
    #[arg(long, default_value = "docs/results.md")]
    pub page: PathBuf,
    #[arg(long, default_value = "8/255", value_parser = atd_train::train::parse_fraction)]
    pub eps: f32,
    /// Steps of PGD and APGD against ATD.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// PGD steps against the baselines (the paper: 10).
    #[arg(long, default_value_t = 10)]
    pub baseline_steps: usize,
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// In-distribution and per-OOD-set images for the eps sweep (Fig. 1) and `atd check`.
    #[arg(long, default_value_t = 200)]
    pub sweep_limit: usize,
    #[arg(long, default_value_t = 100)]
    pub sweep_out_limit: usize,
    /// PGD steps of the eps sweep and the checks.
    #[arg(long, default_value_t = 20)]
    pub sweep_steps: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Finished evaluations are kept here, so that rerunning an interrupted report resumes it.
    /// Entries are keyed by the weight files, the images and the attack settings; delete the
    /// folder to recompute everything. The default lies under `checkpoints/`, committed like a
    /// training run, so a report interrupted on one machine resumes on another.
    #[arg(long, default_value = "checkpoints/report-cache")]
    pub cache_dir: PathBuf,
    /// The ablation (paper Table 3) as `pkg-scripts/ablation.sh` measured it, printed as Table 3
    /// with the file and digest of every variant: that script trains and attacks the variants
    /// (41 minutes on 2 cores), not the report. Said to be missing when the file does not exist.
    #[arg(long, default_value = "docs/ablation.json")]
    pub ablation: PathBuf,
}

/// The row name of the ATD trained by the paper's recipe.
const PAPER_RECIPE: &str = "ATD, paper recipe";

/// Where `pkg-scripts/train-baselines.sh` writes ATOM.
const ATOM: &str = "checkpoints/atom/extractor.safetensors";

/// The baselines `pkg-scripts/train-baselines.sh` trains, where it writes them.
const BASELINES: [&str; 6] = [
    "checkpoints/opengan-fea/atd.safetensors",
    "checkpoints/opengan-pixel/atd.safetensors",
    "checkpoints/hat/extractor.safetensors",
    "checkpoints/aoe/extractor.safetensors",
    "checkpoints/aloe/extractor.safetensors",
    "checkpoints/osad/extractor.safetensors",
];

/// The paper's CIFAR-10 Table 1 (AUROC: Clean, In, Out, In-and-Out), by method and detector.
const PAPER_TABLE1: [(&str, Detector, [f64; 4]); 27] = [
    ("OpenGAN-fea", Detector::Atd, [0.971, 0.473, 0.425, 0.266]),
    ("OpenGAN-pixel", Detector::Atd, [0.818, 0.000, 0.008, 0.000]),
    ("ViT", Detector::Msp, [0.975, 0.448, 0.172, 0.002]),
    ("ViT", Detector::Md, [0.995, 0.136, 0.495, 0.000]),
    ("ViT", Detector::Rmd, [0.951, 0.427, 0.446, 0.025]),
    ("ViT", Detector::Openmax, [0.984, 0.346, 0.291, 0.004]),
    ("AT", Detector::Msp, [0.735, 0.462, 0.442, 0.174]),
    ("AT", Detector::Md, [0.771, 0.429, 0.527, 0.232]),
    ("AT", Detector::Rmd, [0.836, 0.436, 0.523, 0.151]),
    ("AT", Detector::Openmax, [0.805, 0.468, 0.508, 0.208]),
    ("HAT", Detector::Msp, [0.770, 0.560, 0.548, 0.325]),
    ("HAT", Detector::Md, [0.789, 0.572, 0.586, 0.369]),
    ("HAT", Detector::Rmd, [0.878, 0.602, 0.606, 0.258]),
    ("HAT", Detector::Openmax, [0.821, 0.613, 0.648, 0.415]),
    ("OSAD", Detector::Msp, [0.698, 0.411, 0.407, 0.154]),
    ("OSAD", Detector::Md, [0.626, 0.375, 0.432, 0.231]),
    ("OSAD", Detector::Rmd, [0.776, 0.421, 0.456, 0.123]),
    ("OSAD", Detector::Openmax, [0.827, 0.544, 0.554, 0.251]),
    ("AOE", Detector::Msp, [0.780, 0.544, 0.527, 0.285]),
    ("AOE", Detector::Md, [0.709, 0.361, 0.484, 0.215]),
    ("AOE", Detector::Rmd, [0.780, 0.382, 0.421, 0.075]),
    ("AOE", Detector::Openmax, [0.797, 0.528, 0.586, 0.298]),
    ("ALOE", Detector::Msp, [0.843, 0.664, 0.538, 0.287]),
    ("ALOE", Detector::Md, [0.827, 0.369, 0.479, 0.132]),
    ("ALOE", Detector::Rmd, [0.815, 0.293, 0.364, 0.022]),
    ("ALOE", Detector::Openmax, [0.868, 0.584, 0.606, 0.261]),
    ("ATD", Detector::Atd, [0.943, 0.837, 0.862, 0.693]),
];

/// The paper's row for `method` (a Table 1 method name: ATD, AT, HAT, ...) under `detector`.
fn paper_row(method: &str, detector: Detector) -> Option<[f64; 4]> {
    PAPER_TABLE1.iter().find(|(m, d, _)| *m == method && *d == detector).map(|(_, _, auroc)| *auroc)
}

/// Why the report has no row of its own for a method of the paper's Table 1 that none of its
/// files provides.
fn not_measured_reason(method: &str) -> &'static str {
    match method {
        "ViT" => "needs an ImageNet-pretrained ViT, not available offline",
        "AT" => "no AT classifier among this run's files",
        _ => "not trained yet (`pkg-scripts/train-baselines.sh`)",
    }
}

/// The paper's Table 2 (FGSM from a source detector transferred to ATD; AUROC In, Out, In-and-Out).
const PAPER_TABLE2: [(&str, Detector, [f64; 3]); 7] = [
    ("OpenGAN-fea", Detector::Atd, [0.930, 0.940, 0.928]),
    ("ViT", Detector::Md, [0.927, 0.940, 0.925]),
    ("AT", Detector::Md, [0.923, 0.933, 0.920]),
    ("HAT", Detector::Openmax, [0.894, 0.914, 0.865]),
    ("OSAD", Detector::Openmax, [0.907, 0.927, 0.895]),
    ("AOE", Detector::Openmax, [0.907, 0.925, 0.892]),
    ("ALOE", Detector::Openmax, [0.921, 0.933, 0.917]),
];

/// The name of the ATD file's extractor in the tables: its training method as the card records
/// it (the paper's is HAT; ours may be AT, HAT, ...).
fn extractor_label(atd: &Model) -> String {
    atd.card.training["extractor_training"]["recipe"]["method"]
        .as_str()
        .map(str::to_uppercase)
        .unwrap_or_else(|| "robust extractor".into())
}

/// The paper's name for the method that trained `model`: its classifier's training method (AT,
/// HAT, AOE, ...), ATD, OpenGAN-fea for an ATD trained without attacks, or OpenGAN-pixel for
/// one trained on pixels.
fn method_of(model: &Model) -> String {
    let recipe = &model.card.training["recipe"];
    if !model.detectors().contains(&Detector::Atd) {
        recipe["method"].as_str().unwrap_or("unknown").to_uppercase()
    } else if !recipe["pixel"].is_null() {
        "OpenGAN-pixel".into()
    } else if recipe["no_attack"] == true {
        "OpenGAN-fea".into()
    } else {
        "ATD".into()
    }
}

/// The detectors a classifier's Table 1 rows use, and the one a discriminator's use (the last
/// of each is its Table 2 transfer source, as in the paper).
const CLASSIFIER_DETECTORS: [Detector; 4] = [Detector::Msp, Detector::Md, Detector::Rmd, Detector::Openmax];
const DISCRIMINATOR_DETECTORS: [Detector; 1] = [Detector::Atd];

/// How long the report's evaluations took, counting those resumed from the cache at the time
/// they originally took.
struct RunTime {
    seconds: f64,
    /// Per-set results read from the cache.
    cached: usize,
}

struct Row {
    model: String,
    /// The paper's name for the row's method, where its Table 1 has it.
    method: String,
    eval: Evaluation,
    source: Source,
}

/// The file a row's numbers come from, so any number traces back to it: the weights file, the
/// digest of its content (`atd digest`), the training method and the recipe its card records.
#[derive(Clone, serde::Serialize)]
struct Source {
    /// The row name the tables use for this model.
    name: String,
    file: String,
    digest: String,
    method: String,
    recipe: serde_json::Value,
}

impl Source {
    fn of(name: &str, path: &Path, model: &Model) -> anyhow::Result<Self> {
        let bytes =
            atd_core::weights::read_weights_file(path).with_context(|| format!("reading {}", path.display()))?;
        let digest = atd_core::digest::weights_digest(&bytes).with_context(|| format!("reading {}", path.display()))?;
        let method = if model.card.training["extractor_training"].is_null() {
            method_of(model)
        } else {
            format!("{} on the {} extractor", method_of(model), extractor_label(model))
        };
        let recipe = model.card.training["recipe"].clone();
        Ok(Self { name: name.to_string(), file: path.display().to_string(), digest, method, recipe })
    }
}

/// A model of Table 4: attacked on its classifier and on its detector, with the paper's
/// accuracy and In AUROC under each (classification attack first).
struct Table4Row {
    model: String,
    classification: Evaluation,
    detection: Evaluation,
    paper: [f64; 4],
}

/// All scores of an evaluation pooled over the OOD sets: (in clean, in attacked, out clean, out attacked).
fn pooled(e: &Evaluation) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (in_s, outs) = &e.scores;
    let cat = |f: fn(&SetScores) -> &Vec<f32>| outs.iter().flat_map(|o| f(o).iter().copied()).collect::<Vec<f32>>();
    (in_s.clean.clone(), in_s.attacked.clone(), cat(|o| &o.clean), cat(|o| &o.attacked))
}

fn file_line(path: &Path) -> String {
    let size = std::fs::metadata(path).map(|m| m.len() / 1024).unwrap_or(0);
    format!("`{}` ({size} KiB)", path.display())
}

fn hardware() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

/// The models every row comes from: name, file, content digest, method and the recipe's main
/// settings (the whole recipe is in results.json and in `atd info <file>`).
fn models_table(sources: &[&Source]) -> String {
    const KEYS: [&str; 13] = [
        "method",
        "no_attack",
        "arch",
        "attack",
        "epochs",
        "lr",
        "attack_steps",
        "generator",
        "synthetic_outliers",
        "train_limit",
        "init",
        "ema",
        "select_on",
    ];
    let mut s = String::from(
        "## The models\n\nEvery row below names one of these files; `atd digest <file>` prints the digest of its content.\n\n| model | file | digest | method | recipe |\n|---|---|---|---|---|\n",
    );
    for m in sources {
        // A standard model's recipe still holds the (unused) training-attack defaults.
        let attacks = m.recipe["method"] != "standard";
        let recipe: Vec<String> = KEYS
            .iter()
            .filter(|k| attacks || !k.starts_with("attack"))
            .filter_map(|k| {
                m.recipe
                    .get(*k)
                    .filter(|v| !v.is_null() && **v != false)
                    .map(|v| format!("{k} {}", v.to_string().trim_matches('"')))
            })
            .collect();
        s += &format!("| {} | `{}` | `{}` | {} | {} |\n", m.name, m.file, &m.digest[..16], m.method, recipe.join(", "));
    }
    s
}

fn auroc_cells(e: &Evaluation) -> String {
    Setting::ALL.iter().map(|&s| format!(" {:.3} |", e.auroc(s))).collect()
}

fn write_report(opts: &ReportOptions, data: &EvalData, device: &Device) -> anyhow::Result<()> {
    figures::init_font()?;
    let started = Instant::now();
    let cache = EvalCache::new(opts.cache_dir.clone());
    let data = &EvalData { in_set: data.in_set, out_sets: data.out_sets, cache: Some(&cache) };
    let ablation = page::read_ablation(&opts.ablation)?;
    let figures_dir = opts.page.parent().unwrap_or(Path::new(".")).join("figures");
    std::fs::create_dir_all(&figures_dir).with_context(|| format!("creating {}", figures_dir.display()))?;
    let atd = Model::load(&opts.atd, device)?.valid();
    let standard = Model::load(&opts.standard, device)?.valid();
    let paper_recipe = opts.paper_recipe.as_ref().map(|p| Model::load(p, device).map(|m| m.valid())).transpose()?;
    for (path, model) in std::iter::once((&opts.atd, &atd)).chain(opts.paper_recipe.iter().zip(&paper_recipe)) {
        anyhow::ensure!(model.detectors().contains(&Detector::Atd), "{} has no ATD discriminator", path.display());
    }
    let atd_source = Source::of("ATD", &opts.atd, &atd)?;
    let standard_source = Source::of("standard", &opts.standard, &standard)?;
    let paper_recipe_source =
        opts.paper_recipe.iter().zip(&paper_recipe).map(|(p, m)| Source::of(PAPER_RECIPE, p, m)).next().transpose()?;
    let robust = extractor_label(&atd);
    let mut untrained = Vec::new();
    let mut baselines = Vec::new();
    for path in &opts.baselines {
        if !path.exists() {
            untrained.push(path.clone());
            continue;
        }
        let model = Model::load(path, device)?.valid();
        let source = Source::of(&method_of(&model), path, &model)?;
        // A discriminator (OpenGAN-fea) is reported on its own score, a classifier on four.
        let detectors: &[Detector] =
            if model.detectors().contains(&Detector::Atd) { &DISCRIMINATOR_DETECTORS } else { &CLASSIFIER_DETECTORS };
        anyhow::ensure!(
            detectors.iter().all(|d| model.detectors().contains(d)),
            "{}: a baseline needs a discriminator or a classifier with its fitted baselines (atd train extractor exports one)",
            path.display()
        );
        baselines.push((model, source, detectors));
    }
    // The robust detectors of Table 1: the ATD file's extractor as a classifier, and each baseline.
    let robust_source = Source { name: robust.clone(), ..atd_source.clone() };
    let detectors_of: Vec<(&Model, &Source, &[Detector])> =
        std::iter::once((&atd, &robust_source, &CLASSIFIER_DETECTORS[..]))
            .chain(baselines.iter().map(|(m, source, detectors)| (m, source, *detectors)))
            .collect();
    let cfg = |steps: usize| {
        PgdConfig::from(AttackSpec::new(opts.eps, steps).with_restarts(opts.restarts).with_seed(opts.seed))
    };

    // Table 1: ATD under PGD and APGD (and their per-image worst case); every baseline under PGD.
    let atd_attacks = [Attack::new(AttackKind::Pgd, cfg(opts.steps)), Attack::new(AttackKind::Apgd, cfg(opts.steps))];
    let atd_runs = evaluate_all(&atd, Detector::Atd, data, &atd_attacks, device);
    let atd_row = |model: &str, eval: &Evaluation, source: &Source| Row {
        model: model.into(),
        method: "ATD".into(),
        eval: eval.clone(),
        source: source.clone(),
    };
    let mut rows: Vec<Row> = atd_runs.iter().map(|e| atd_row("ATD", e, &atd_source)).collect();
    let paper_recipe_runs = paper_recipe.as_ref().map(|m| evaluate_all(m, Detector::Atd, data, &atd_attacks, device));
    if let (Some(runs), Some(source)) = (&paper_recipe_runs, &paper_recipe_source) {
        rows.extend(runs.iter().map(|e| atd_row(PAPER_RECIPE, e, source)));
    }
    let baseline = Attack::new(AttackKind::Pgd, cfg(opts.baseline_steps));
    let standard_row = (&standard, &standard_source, &CLASSIFIER_DETECTORS[..]);
    for &(model, source, detectors) in detectors_of.iter().chain([&standard_row]) {
        for &detector in detectors.iter().filter(|d| model.detectors().contains(d)) {
            let eval = evaluate(model, detector, data, &baseline, device);
            rows.push(Row { model: source.name.clone(), method: source.name.clone(), eval, source: source.clone() });
        }
    }

    // Table 2: FGSM crafted on other detectors, transferred to ATD: the paper's sources (MD of
    // the ATD file's extractor, OpenMax of each classifier, OpenGAN-fea's discriminator), and
    // the standard model's MSP.
    let mut sources = vec![(&standard, Detector::Msp, "standard"), (&atd, Detector::Md, robust.as_str())];
    sources.extend(
        detectors_of.iter().map(|(m, source, detectors)| (*m, *detectors.last().unwrap(), source.name.as_str())),
    );
    let transfers: Vec<Evaluation> = sources
        .iter()
        .filter(|(m, d, _)| m.detectors().contains(d))
        .map(|(m, d, name)| {
            evaluate(&atd, Detector::Atd, data, &Attack::transfer(m, *d, name.to_string(), opts.eps), device)
        })
        .collect();

    // Table 4: attacking the classifier vs attacking the detector, for ATD (its own attack
    // budget) and OSAD's OpenMax (the baselines' budget; its detection row is Table 1's).
    let classification =
        evaluate(&atd, Detector::Atd, data, &Attack::new(AttackKind::Classification, cfg(opts.steps)), device);
    let mut table4 = vec![Table4Row {
        model: "ATD (atd)".into(),
        classification: classification.clone(),
        detection: atd_runs[0].clone(),
        paper: [0.622, 0.918, 0.847, 0.837],
    }];
    for (model, source, _) in baselines.iter().filter(|(_, source, _)| source.name == "OSAD") {
        let detection = rows.iter().find(|r| r.source.file == source.file && r.eval.detector == Detector::Openmax);
        if let Some(detection) = detection {
            let attack = Attack::new(AttackKind::Classification, cfg(opts.baseline_steps));
            table4.push(Table4Row {
                model: "OSAD (openmax)".into(),
                classification: evaluate(model, Detector::Openmax, data, &attack, device),
                detection: detection.eval.clone(),
                paper: [0.419, 0.813, 0.777, 0.544],
            });
        }
    }

    // Table 5: ATOM on its outlier class under ATD's attacks (the paper: PGD-100).
    let atom = opts.atom.exists().then(|| Model::load(&opts.atom, device).map(|m| m.valid())).transpose()?;
    if let Some(model) = &atom {
        anyhow::ensure!(
            model.detectors().contains(&Detector::OutlierClass),
            "{} is not an ATOM file (its classifier has no outlier class)",
            opts.atom.display()
        );
    }
    let atom_source = atom.as_ref().map(|m| Source::of("ATOM", &opts.atom, m)).transpose()?;
    let atom_runs = atom.as_ref().map(|m| evaluate_all(m, Detector::OutlierClass, data, &atd_attacks, device));

    // The checks and the eps sweep (Fig. 1), on a subset.
    let sweep_in = data.in_set.clone().truncated(opts.sweep_limit);
    let sweep_outs: Vec<(String, atd_core::data::ImageSet)> =
        data.out_sets.iter().map(|(n, s)| (n.clone(), s.clone().truncated(opts.sweep_out_limit))).collect();
    let sweep_data = EvalData { in_set: &sweep_in, out_sets: &sweep_outs, cache: Some(&cache) };
    let check_opts = CheckOptions {
        eps: opts.eps,
        steps: opts.sweep_steps,
        tolerance: 0.01,
        huge_eps: 1.0,
        broken_auroc: 0.05,
        transfer: Some((&standard, Detector::Msp, "standard".to_string())),
    };
    let (checks, check_evals) = check::run_checks(&atd, Detector::Atd, &sweep_data, &check_opts, device);
    let eps_points = check::sweep_epsilons(opts.eps);
    let sweep_line = |evals: &[Evaluation]| {
        evals
            .iter()
            .zip(&eps_points)
            .map(|(e, eps)| (*eps as f64 * 255.0, e.auroc(Setting::InAndOut)))
            .collect::<Vec<_>>()
    };
    let mut sweep = vec![("ATD".to_string(), sweep_line(&check_evals[..eps_points.len()]))];
    for (name, model, detector) in [
        (format!("{robust} (OpenMax)"), &atd, Detector::Openmax),
        (format!("{robust} (MSP)"), &atd, Detector::Msp),
        ("standard (MSP)".to_string(), &standard, Detector::Msp),
    ] {
        if model.detectors().contains(&detector) {
            let evals: Vec<Evaluation> = eps_points
                .iter()
                .map(|&eps| {
                    evaluate(
                        model,
                        detector,
                        &sweep_data,
                        &Attack::new(
                            AttackKind::Pgd,
                            AttackSpec::new(eps, opts.sweep_steps).with_seed(opts.seed).into(),
                        ),
                        device,
                    )
                })
                .collect();
            sweep.push((name, sweep_line(&evals)));
        }
    }

    // Figures.
    let worst = atd_runs.last().expect("ATD was evaluated");
    let (ic, ia, oc, oa) = pooled(worst);
    figures::score_histograms(
        &figures_dir.join("histogram-atd.png"),
        &format!("ATD scores, clean vs {}", worst.attack),
        &ic,
        &ia,
        &oc,
        &oa,
    )?;
    let std_msp = rows.iter().find(|r| r.model == "standard" && r.eval.detector == Detector::Msp);
    let mut roc =
        vec![("ATD clean".to_string(), ic.clone(), oc.clone()), ("ATD In-and-Out, worst case".to_string(), ia, oa)];
    if let Some(r) = std_msp {
        let (ic, ia, oc, oa) = pooled(&r.eval);
        figures::score_histograms(
            &figures_dir.join("histogram-standard-msp.png"),
            &format!("standard MSP scores, clean vs PGD-{}", opts.baseline_steps),
            &ic,
            &ia,
            &oc,
            &oa,
        )?;
        roc.push(("standard MSP clean".to_string(), ic, oc));
        roc.push(("standard MSP In-and-Out".to_string(), ia, oa));
    }
    figures::roc_curves(&figures_dir.join("roc.png"), "ROC, all OOD sets pooled", &roc)?;
    figures::auroc_vs_eps(
        &figures_dir.join("auroc-vs-eps.png"),
        &format!("In-and-Out AUROC under PGD-{}", opts.sweep_steps),
        &sweep,
    )?;

    let run_time =
        RunTime { seconds: started.elapsed().as_secs_f64() + cache.hit_seconds.get(), cached: cache.hits.get() };
    let atd_tables = Tables {
        extractor: &robust,
        atd: &atd_runs,
        paper_recipe: paper_recipe_runs.as_deref(),
        untrained: &untrained,
        atom: atom_runs.as_deref(),
        ablation: ablation.as_ref(),
    };
    let sources: Vec<&Source> = [Some(&atd_source), paper_recipe_source.as_ref(), Some(&standard_source)]
        .into_iter()
        .flatten()
        .chain(baselines.iter().map(|(_, source, _)| source))
        .chain(&atom_source)
        .collect();
    let page = markdown(opts, data, &rows, &transfers, &table4, &atd_tables, &checks, &sweep, &run_time);
    let page = page.replacen("\n## Table 1", &format!("\n{}\n## Table 1", models_table(&sources)), 1);
    std::fs::write(&opts.page, page).with_context(|| format!("writing {}", opts.page.display()))?;
    let numbers = json!({
        "models": sources,
        "table1": rows
            .iter()
            .map(|r| json!({"model": r.model, "source": r.source, "evaluation": r.eval}))
            .collect::<Vec<_>>(),
        "transfer": transfers,
        "classification_attack": classification,
        "table4": table4.iter().map(|t| json!({"model": t.model, "classification_attack": t.classification, "detection_attack": t.detection})).collect::<Vec<_>>(),
        "table3_ablation": ablation,
        "table5_atom": atom_runs.as_ref().map(|runs| json!({"source": atom_source, "evaluations": runs})),
        "checks": checks,
        "auroc_vs_eps": sweep,
    });
    let json_path = opts.page.with_extension("json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&numbers)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!(
        "wrote {}, {} and {}/*.png in {:.0} s ({} per-set results read from {})",
        opts.page.display(),
        json_path.display(),
        figures_dir.display(),
        started.elapsed().as_secs_f64(),
        run_time.cached,
        opts.cache_dir.display()
    );
    Ok(())
}

/// `atd report`'s arguments.
#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub options: ReportOptions,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let device = args.backend.device()?;
    let (in_set, out_sets) = args.data.load(1000, 500)?;
    write_report(&args.options, &EvalData { in_set: &in_set, out_sets: &out_sets, cache: None }, &device)
}
