//! `atd check`: the attack-strength sanity checks of the robustness literature (Athalye et al.
//! 2018, Carlini et al. 2019), on In-and-Out AUROC averaged over the OOD sets. A robust number
//! is only worth something when the attack behind it passes them.

use std::path::PathBuf;

use anyhow::Context;
use atd_core::attack::{AttackSpec, Setting};
use burn::tensor::{Device, Tensor};
use serde::Serialize;

use atd_train::eval::{Attack, AttackKind, EvalData, Evaluation, evaluate};
use atd_train::pgd::{PgdConfig, input_gradient};
use atd_train::{Backend, Detector, Model, dataset, model::to_vec};

use crate::args::{DataArgs, TransferArgs, pick_detector};

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &str, pass: bool, detail: String) -> Self {
        Self { name: name.to_string(), pass, detail }
    }
}

pub struct CheckOptions<'a> {
    pub eps: f32,
    pub steps: usize,
    /// How much a "never raises" comparison may go the wrong way (sampling noise).
    pub tolerance: f64,
    /// The radius at which every detector must fall (AUROC at most `broken_auroc`).
    pub huge_eps: f32,
    pub broken_auroc: f64,
    /// Another model's detector for the transfer check.
    pub transfer: Option<(&'a Model, Detector, String)>,
}

/// The radii of the eps sweep: 0, eps/4, eps/2, eps and 2 eps.
pub fn sweep_epsilons(eps: f32) -> [f32; 5] {
    [0.0, eps / 4.0, eps / 2.0, eps, 2.0 * eps]
}

/// Fraction of images whose input gradient of the detector score is exactly zero.
fn zero_gradient_fraction(model: &Model, detector: Detector, data: &EvalData, device: &Device) -> f64 {
    let sets = std::iter::once(data.in_set).chain(data.out_sets.iter().map(|(_, s)| s));
    let (mut zero, mut total) = (0, 0);
    for set in sets {
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in dataset::batches(&idx, 128) {
            let x = dataset::images(set, chunk, None, device);
            let g = to_vec(input_gradient(&|x: Tensor<4>| model.score_logit(detector, x), &x));
            let per_image = g.len() / chunk.len();
            zero += g.chunks_exact(per_image).filter(|row| row.iter().all(|v| *v == 0.0)).count();
            total += chunk.len();
        }
    }
    zero as f64 / total.max(1) as f64
}

/// Run every check; also returns the evaluations behind them (for the report), the eps sweep
/// (in `sweep_epsilons` order) first.
pub fn run_checks(
    model: &Model,
    detector: Detector,
    data: &EvalData,
    opts: &CheckOptions,
    device: &Device,
) -> (Vec<Check>, Vec<Evaluation>) {
    let tol = opts.tolerance;
    let pgd_at = |eps: f32, steps: usize, restarts: usize| {
        let cfg = PgdConfig::from(AttackSpec::new(eps, steps).with_restarts(restarts));
        evaluate(model, detector, data, &Attack::new(AttackKind::Pgd, cfg), device)
    };
    let mut checks = Vec::new();

    let zero = zero_gradient_fraction(model, detector, data, device);
    checks.push(Check::new(
        "input gradient is not zero at the clean images",
        zero == 0.0,
        format!("{:.1}% of {} images have an all-zero gradient", 100.0 * zero, data.images()),
    ));

    let epsilons = sweep_epsilons(opts.eps);
    let sweep: Vec<Evaluation> = epsilons.iter().map(|&e| pgd_at(e, opts.steps, 1)).collect();
    let aurocs: Vec<f64> = sweep.iter().map(|e| e.auroc(Setting::InAndOut)).collect();
    let monotone = aurocs.windows(2).all(|w| w[1] <= w[0] + tol);
    let listing = epsilons
        .iter()
        .zip(&aurocs)
        .map(|(e, a)| format!("{:.1}/255: {a:.3}", e * 255.0))
        .collect::<Vec<_>>()
        .join(", ");
    checks.push(Check::new("AUROC does not rise with eps", monotone, listing));

    let huge = pgd_at(opts.huge_eps, opts.steps, 1);
    checks.push(Check::new(
        "a huge eps breaks the detector",
        huge.auroc(Setting::InAndOut) <= opts.broken_auroc,
        format!(
            "In-and-Out AUROC {:.3} at eps {:.0}/255 (must be <= {})",
            huge.auroc(Setting::InAndOut),
            opts.huge_eps * 255.0,
            opts.broken_auroc
        ),
    ));

    let white_box = &sweep[3];
    let base = white_box.auroc(Setting::InAndOut);
    let longer = pgd_at(opts.eps, 4 * opts.steps, 1);
    checks.push(Check::new(
        "more steps do not raise AUROC",
        longer.auroc(Setting::InAndOut) <= base + tol,
        format!("PGD-{}: {base:.3}, PGD-{}: {:.3}", opts.steps, 4 * opts.steps, longer.auroc(Setting::InAndOut)),
    ));
    let restarted = pgd_at(opts.eps, opts.steps, 3);
    checks.push(Check::new(
        "restarts do not raise AUROC",
        restarted.auroc(Setting::InAndOut) <= base + tol,
        format!("1 start: {base:.3}, 3 starts: {:.3}", restarted.auroc(Setting::InAndOut)),
    ));

    let noise = evaluate(model, detector, data, &Attack::new(AttackKind::Noise, PgdConfig::new(opts.eps, 1)), device);
    checks.push(Check::new(
        "random noise hurts less than the white-box attack",
        noise.auroc(Setting::InAndOut) + tol >= base,
        format!("noise: {:.3}, PGD-{}: {base:.3}", noise.auroc(Setting::InAndOut), opts.steps),
    ));
    let mut evaluations = sweep;
    evaluations.extend([huge, longer, restarted, noise]);
    if let Some((source, source_detector, name)) = &opts.transfer {
        let transferred = evaluate(
            model,
            detector,
            data,
            &Attack::transfer(source, *source_detector, name.clone(), opts.eps),
            device,
        );
        checks.push(Check::new(
            "a transferred FGSM hurts less than the white-box attack",
            transferred.auroc(Setting::InAndOut) + tol >= base,
            format!(
                "FGSM from {name} ({}): {:.3}, PGD-{}: {base:.3}",
                source_detector.name(),
                transferred.auroc(Setting::InAndOut),
                opts.steps
            ),
        ));
        evaluations.push(transferred);
    }
    (checks, evaluations)
}

/// One line per check.
pub fn summary(checks: &[Check]) -> String {
    checks.iter().map(|c| format!("{}  {}: {}\n", if c.pass { "PASS" } else { "FAIL" }, c.name, c.detail)).collect()
}

/// `atd check`'s arguments.
#[derive(clap::Args)]
pub struct CheckArgs {
    pub weights: PathBuf,
    #[arg(long, value_enum)]
    pub detector: Option<Detector>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "8/255", value_parser = atd_train::train::parse_fraction)]
    pub eps: f32,
    /// PGD steps of the reference attack (the "more steps" check uses 4x).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// How far a "never raises AUROC" comparison may go the wrong way (sampling noise).
    #[arg(long, default_value_t = 0.01)]
    pub tolerance: f64,
    /// The radius at which the detector must break.
    #[arg(long, default_value = "1", value_parser = atd_train::train::parse_fraction)]
    pub huge_eps: f32,
    /// The most In-and-Out AUROC allowed at --huge-eps.
    #[arg(long, default_value_t = 0.05)]
    pub broken_auroc: f64,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let CheckArgs { weights, detector, data, eps, steps, tolerance, huge_eps, broken_auroc, transfer, json, backend } =
        args;
    let device = backend.device()?;
    let model = Model::load(&weights, &device)?.valid();
    let detector = pick_detector(&model, detector)?;
    let (in_set, out_sets) = data.load(200, 100)?;
    let data = atd_train::eval::EvalData { in_set: &in_set, out_sets: &out_sets, cache: None };
    let source = transfer.load(&device)?;
    let opts = CheckOptions {
        eps,
        steps,
        tolerance,
        huge_eps,
        broken_auroc,
        transfer: source.as_ref().map(|(m, d, n)| (m, *d, n.clone())),
    };
    let (checks, _) = run_checks(&model, detector, &data, &opts, &device);
    println!(
        "{} on {}: {} in-distribution images, {} OOD images, In-and-Out AUROC",
        detector.name(),
        weights.display(),
        in_set.len(),
        data.images() - in_set.len()
    );
    print!("{}", summary(&checks));
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&checks)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    anyhow::ensure!(failed == 0, "{failed} of {} checks failed", checks.len());
    Ok(())
}
