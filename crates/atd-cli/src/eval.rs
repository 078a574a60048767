//! `atd eval`: a detector under end-to-end attacks in the four settings.

use std::path::PathBuf;

use anyhow::Context;
use atd_train::eval::AttackKind;
use atd_train::{Backend, Detector, Model};

use crate::args::{DataArgs, PgdArgs, TransferArgs, pick_detector};

/// `atd eval`'s arguments.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The weights file.
    pub weights: PathBuf,
    /// The detector to evaluate (default: atd when the file has a discriminator, else msp);
    /// `--baseline md` is the same as `--detector md`.
    #[arg(long, value_enum, alias = "baseline")]
    pub detector: Option<Detector>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Attacks, comma-separated; with several, their per-image worst case is reported too.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pgd")]
    pub attack: Vec<AttackKind>,
    #[command(flatten)]
    pub pgd: PgdArgs,
    /// PGD (on the detector or the classifier) keeps each image's best point over all its
    /// steps, as the page's attack does, instead of its last iterate (the paper's PGD).
    #[arg(long)]
    pub best_of_steps: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Also write the results as JSON (a list: one entry per attack).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep each image set's scores in this folder (`atd report`'s cache: the same entries and
    /// keys), so an interrupted evaluation resumes where it stopped and a finished one, here
    /// or in a report, is read back instead of recomputed.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let EvalArgs { weights, detector, data, attack, pgd, best_of_steps, transfer, json, cache, backend } = args;
    let device = backend.device()?;
    let model = Model::load(&weights, &device)?.valid();
    let detector = pick_detector(&model, detector)?;
    anyhow::ensure!(
        model.card.classifier.is_some() || !attack.contains(&AttackKind::Classification),
        "--attack classification needs a classifier head, and {} has none",
        weights.display()
    );
    let (in_set, out_sets) = data.load(1000, 500)?;
    let cache = cache.map(atd_train::eval::EvalCache::new);
    let data = atd_train::eval::EvalData { in_set: &in_set, out_sets: &out_sets, cache: cache.as_ref() };
    let cfg = atd_train::PgdConfig::from(pgd.spec());
    let source = transfer.load(&device)?;
    let mut attacks: Vec<_> = attack
        .iter()
        .map(|&kind| {
            // Only PGD has a last iterate to replace; APGD always keeps its best point.
            let runs_pgd = matches!(kind, AttackKind::Pgd | AttackKind::Classification);
            let cfg = atd_train::PgdConfig { best_of_steps: best_of_steps && runs_pgd, ..cfg.clone() };
            atd_train::eval::Attack::new(kind, cfg)
        })
        .collect();
    if let Some((m, d, name)) = &source {
        attacks.push(atd_train::eval::Attack::transfer(m, *d, name.clone(), pgd.eps));
    }
    let started = std::time::Instant::now();
    let results = atd_train::eval::evaluate_all(&model, detector, &data, &attacks, &device);
    let seconds = started.elapsed().as_secs_f64();
    for result in &results {
        println!("{}", result.markdown());
    }
    let images = data.images() * attacks.len();
    // A rate over results partly read back from the cache would mean nothing.
    let rate = match &cache {
        Some(c) if c.hits.get() > 0 => {
            format!("{} per-set results read from {}", c.hits.get(), c.dir.display())
        }
        _ => format!("{:.1}/s", images as f64 / seconds),
    };
    println!("{images} image evaluations in {seconds:.0} s ({rate}) on {}", weights.display());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
