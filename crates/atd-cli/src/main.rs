//! The `atd` command line: training, evaluation, reports and attacks over the Burn models
//! (atd-train) and the WGSL engine (atd-gpu).

mod check;
mod figures;
mod report;

use std::path::{Path, PathBuf};

use anyhow::Context;
use atd_core::attack::AttackSpec;
use atd_core::data::ImageSet;
use atd_train::eval::AttackKind;
use atd_train::{Backend, Detector, Model, batches, dataset, model::to_vec, progress};
use burn::tensor::Device;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "atd", version, about = "Adversarially trained discriminators for robust OOD detection")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model card of a weights file (architecture, classes, thresholds, recipe, metrics).
    Info {
        weights: PathBuf,
        /// Print the raw JSON card instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Score images of any size and format with every detector the weights file holds.
    Score {
        weights: PathBuf,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Attack one image end to end on a detector's score and write the adversarial PNG.
    Attack {
        weights: PathBuf,
        image: PathBuf,
        /// gpu: our WGSL engine; cpu: the same kernels on the CPU; burn: the Burn reference.
        #[arg(long, value_enum, default_value = "gpu")]
        engine: AttackEngine,
        /// The detector to attack: atd (discriminator) or msp (classifier head); the WGSL
        /// engines compute these two.
        #[arg(long, value_enum, default_value = "atd")]
        detector: Detector,
        /// in: make it look in-distribution; out: make it look OOD; auto: the opposite of the
        /// clean verdict (needs the card's threshold; otherwise out).
        #[arg(long, value_enum, default_value = "auto")]
        direction: AttackDirection,
        #[command(flatten)]
        pgd: PgdArgs,
        /// The adversarial image (PNG, 32x32).
        #[arg(long)]
        out: PathBuf,
        /// Also write the perturbation, amplified to the full range (PNG).
        #[arg(long)]
        perturbation: Option<PathBuf>,
    },
    /// A detector under end-to-end attacks in the four settings Clean / In / Out / In-and-Out.
    Eval {
        /// The weights file.
        weights: PathBuf,
        /// The detector to evaluate (default: atd when the file has a discriminator, else msp);
        /// `--baseline md` is the same as `--detector md`.
        #[arg(long, value_enum, alias = "baseline")]
        detector: Option<Detector>,
        #[command(flatten)]
        data: DataArgs,
        /// Attacks, comma-separated; with several, their per-image worst case is reported too.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "pgd")]
        attack: Vec<AttackKind>,
        #[command(flatten)]
        pgd: PgdArgs,
        /// PGD (on the detector or the classifier) keeps each image's best point over all its
        /// steps, as the page's attack does, instead of its last iterate (the paper's PGD).
        #[arg(long)]
        best_of_steps: bool,
        #[command(flatten)]
        transfer: TransferArgs,
        /// Also write the results as JSON (a list: one entry per attack).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Keep each image set's scores in this folder (`atd report`'s cache: the same entries and
        /// keys), so an interrupted evaluation resumes where it stopped and a finished one, here
        /// or in a report, is read back instead of recomputed.
        #[arg(long)]
        cache: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Attack-strength sanity checks on a detector, printed as PASS/FAIL with their numbers;
    /// exits with an error when one fails.
    Check {
        weights: PathBuf,
        #[arg(long, value_enum)]
        detector: Option<Detector>,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value = "8/255", value_parser = atd_train::train::parse_fraction)]
        eps: f32,
        /// PGD steps of the reference attack (the "more steps" check uses 4x).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// How far a "never raises AUROC" comparison may go the wrong way (sampling noise).
        #[arg(long, default_value_t = 0.01)]
        tolerance: f64,
        /// The radius at which the detector must break.
        #[arg(long, default_value = "1", value_parser = atd_train::train::parse_fraction)]
        huge_eps: f32,
        /// The most In-and-Out AUROC allowed at --huge-eps.
        #[arg(long, default_value_t = 0.05)]
        broken_auroc: f64,
        #[command(flatten)]
        transfer: TransferArgs,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// Evaluate every shipped model and write docs/results.md with tables and figures.
    Report {
        #[command(flatten)]
        options: report::ReportOptions,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
    },
    /// The paper's 2-D example (Fig. 4): one decision-map PNG per training setting, and the
    /// margin around the closed and open sets.
    Toy {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 300)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Content digests of weight files (SHA-256 of the canonical bytes: equal for the same
    /// tensors and card however the file's header is ordered), one "digest  path" line each.
    Digest {
        #[arg(required = true)]
        weights: Vec<PathBuf>,
    },
    /// Training and PGD throughput of an architecture on random images (images/s, one line each).
    Bench {
        #[arg(long, value_enum, default_value = "small")]
        arch: atd_train::train::extractor::Arch,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Timed steps of each kind (after one warm-up step).
        #[arg(long, default_value_t = 10)]
        iterations: usize,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: Backend,
        /// One JSON object instead of text (what pkg-scripts/bench-peers.sh reads).
        #[arg(long)]
        json: bool,
    },
    /// Train a model (progress bar, per-epoch checkpoint, `--resume`, JSON-lines log).
    Train {
        #[command(subcommand)]
        what: TrainCommand,
    },
}

/// The end-to-end L-infinity PGD attack (step size 2.5 eps / steps, uniform random start).
#[derive(clap::Args)]
struct PgdArgs {
    /// Radius, e.g. 8/255.
    #[arg(long, default_value = "8/255", value_parser = atd_train::train::parse_fraction)]
    eps: f32,
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Random restarts; the per-sample best is kept.
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    #[arg(long, default_value_t = 0)]
    seed: u32,
}

impl PgdArgs {
    fn spec(&self) -> AttackSpec {
        AttackSpec::new(self.eps, self.steps).with_restarts(self.restarts).with_seed(self.seed)
    }
}

/// The test data of an evaluation.
#[derive(clap::Args)]
struct DataArgs {
    /// In-distribution test set inside the data pack.
    #[arg(long = "in", default_value = "cifar10-test.bin")]
    in_set: String,
    /// OOD test sets inside the data pack, comma-separated; `synthetic:<family>` draws a
    /// procedural family instead (e.g. the validation families synthetic:star-field,
    /// synthetic:cells, synthetic:fractal-texture, synthetic:pen-curves).
    #[arg(
        long = "out",
        value_delimiter = ',',
        default_value = "mnist-test.bin,tinyimagenet-test.bin,flowers102-32.bin,coil100-32.bin,dtd10-32.bin,cifar100-mixed.bin"
    )]
    out_sets: Vec<String>,
    /// In-distribution images used, the first N (default 1000; check: 200).
    #[arg(long)]
    limit: Option<usize>,
    /// Images per OOD set, the first N (default 500; check: 100).
    #[arg(long)]
    out_limit: Option<usize>,
    /// The data pack folder (default: $ATD_DATA, else ../shared/data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    fn load(&self, limit: usize, out_limit: usize) -> anyhow::Result<(ImageSet, Vec<(String, ImageSet)>)> {
        let data = dataset::data_dir(self.data_dir.as_deref());
        let in_set = dataset::load_set(&data, &self.in_set)?.truncated(self.limit.unwrap_or(limit));
        let outs = self
            .out_sets
            .iter()
            .map(|name| {
                let count = self.out_limit.unwrap_or(out_limit);
                let set = match name.strip_prefix("synthetic:") {
                    Some(family) => atd_train::synthetic::family_set(family, count)?,
                    None => dataset::load_set(&data, name)?.truncated(count),
                };
                Ok((name.trim_end_matches(".bin").to_string(), set))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((in_set, outs))
    }
}

/// A source model for transferred attacks.
#[derive(clap::Args)]
struct TransferArgs {
    /// Also attack with FGSM crafted on this weights file's detector (black-box transfer).
    #[arg(long)]
    transfer_from: Option<PathBuf>,
    /// The source detector (default: its first one).
    #[arg(long, value_enum)]
    transfer_detector: Option<Detector>,
}

impl TransferArgs {
    fn load(&self, device: &Device) -> anyhow::Result<Option<(Model, Detector, String)>> {
        let Some(path) = &self.transfer_from else { return Ok(None) };
        let model = Model::load(path, device)?.valid();
        let detector = pick_detector(&model, self.transfer_detector)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Some((model, detector, name)))
    }
}

/// The requested detector, or the file's first one; an error when the file lacks it.
fn pick_detector(model: &Model, wanted: Option<Detector>) -> anyhow::Result<Detector> {
    let available = model.detectors();
    let detector = wanted.or_else(|| available.first().copied()).context("the weights file holds no detector")?;
    anyhow::ensure!(available.contains(&detector), "{} is not in this file (it has {:?})", detector.name(), available);
    Ok(detector)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AttackEngine {
    Gpu,
    Cpu,
    Burn,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum AttackDirection {
    Auto,
    In,
    Out,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// The feature extractor and its classifier head (standard, AT, HAT, OE, AOE, ALOE);
    /// writes <out>/extractor.safetensors with MSP, MD, RMD and OpenMax fitted.
    Extractor {
        #[command(flatten)]
        recipe: atd_train::train::extractor::ExtractorRecipe,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The ATD discriminator (and generator) on a frozen extractor; writes <out>/atd.safetensors.
    Atd {
        #[command(flatten)]
        recipe: atd_train::train::atd::AtdRecipe,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run folder: log.jsonl, checkpoint/, best.safetensors and the exported weights.
    #[arg(long)]
    out: PathBuf,
    /// Continue the checkpoint in --out (the recipe must match; --epochs may grow).
    #[arg(long)]
    resume: bool,
    /// Stop cleanly after this many epochs of this invocation (continue later with --resume).
    #[arg(long)]
    stop_after: Option<usize>,
    /// The data pack folder (default: $ATD_DATA, else ../shared/data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

impl RunArgs {
    fn options(&self, epochs: usize) -> atd_train::train::RunOptions {
        atd_train::train::RunOptions { out: self.out.clone(), epochs, resume: self.resume, stop_after: self.stop_after }
    }
}

/// Burn allocates and frees activation-sized buffers (megabytes each) at every step. glibc hands
/// those back to the kernel and faults them in again, which cost ~6-8% of the wall time of a
/// CPU training or attack run here (measured: HAT training, `atd eval`); keep them in the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only tunes the allocator; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Rust ignores SIGPIPE, so `atd info --json | head` would panic on the closed pipe; end
/// quietly instead, as command-line tools do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn quiet_on_closed_pipe() {}

fn main() {
    keep_freed_memory();
    quiet_on_closed_pipe();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info { weights, json } => info(&weights, json),
        Command::Score { weights, images, backend } => score(&weights, &images, backend),
        Command::Attack { weights, image, engine, detector, direction, pgd, out, perturbation } => {
            attack(&weights, &image, &AttackChoice { engine, detector, direction }, &pgd, &out, perturbation.as_deref())
        }
        Command::Eval { weights, detector, data, attack, pgd, best_of_steps, transfer, json, cache, backend } => {
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
        Command::Check {
            weights,
            detector,
            data,
            eps,
            steps,
            tolerance,
            huge_eps,
            broken_auroc,
            transfer,
            json,
            backend,
        } => {
            let device = backend.device()?;
            let model = Model::load(&weights, &device)?.valid();
            let detector = pick_detector(&model, detector)?;
            let (in_set, out_sets) = data.load(200, 100)?;
            let data = atd_train::eval::EvalData { in_set: &in_set, out_sets: &out_sets, cache: None };
            let source = transfer.load(&device)?;
            let opts = check::CheckOptions {
                eps,
                steps,
                tolerance,
                huge_eps,
                broken_auroc,
                transfer: source.as_ref().map(|(m, d, n)| (m, *d, n.clone())),
            };
            let (checks, _) = check::run(&model, detector, &data, &opts, &device);
            println!(
                "{} on {}: {} in-distribution images, {} OOD images, In-and-Out AUROC",
                detector.name(),
                weights.display(),
                in_set.len(),
                data.images() - in_set.len()
            );
            print!("{}", check::summary(&checks));
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&checks)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let failed = checks.iter().filter(|c| !c.pass).count();
            anyhow::ensure!(failed == 0, "{failed} of {} checks failed", checks.len());
            Ok(())
        }
        Command::Report { options, data, backend } => {
            let device = backend.device()?;
            let (in_set, out_sets) = data.load(1000, 500)?;
            report::run(
                &options,
                &atd_train::eval::EvalData { in_set: &in_set, out_sets: &out_sets, cache: None },
                &device,
            )
        }
        Command::Toy { out, epochs, seed } => {
            println!("setting\tattacked (closed, open, generated)\tclosed-set margin\topen-set margin");
            for (s, closed, open) in atd_train::toy::run(&out, epochs, seed)? {
                println!("{}\t{} {} {}\t{closed:.3}\t{open:.3}", s.name, s.closed, s.open, s.generated);
            }
            println!("decision maps: {}/toy-*.png (blue = in, orange = out)", out.display());
            Ok(())
        }
        Command::Digest { weights } => {
            for path in weights {
                let bytes = atd_core::weights::read_weights_file(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let digest =
                    atd_core::digest::weights_digest(&bytes).with_context(|| format!("reading {}", path.display()))?;
                println!("{digest}  {}", path.display());
            }
            Ok(())
        }
        Command::Bench { arch, batch, iterations, backend, json } => {
            let t = atd_train::bench::measure(arch.spec(), batch, iterations, &backend.device()?)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            if json {
                let line = serde_json::json!({
                    "arch": format!("{arch:?}").to_lowercase(), "batch": batch, "threads": threads,
                    "train": t.train_images_per_second, "pgd": t.pgd_image_steps_per_second,
                    "forward": t.forward_images_per_second,
                });
                println!("{line}");
                return Ok(());
            }
            println!(
                "train step: {:.1} images/s ({arch:?}, batch {batch}, {backend:?}, {threads} threads)",
                t.train_images_per_second
            );
            println!(
                "pgd step:   {:.1} image-steps/s ({arch:?}, batch {batch}, {backend:?}, {threads} threads)",
                t.pgd_image_steps_per_second
            );
            println!(
                "forward:    {:.1} images/s ({arch:?}, batch {batch}, {backend:?}, {threads} threads)",
                t.forward_images_per_second
            );
            Ok(())
        }
        Command::Train { what: TrainCommand::Extractor { recipe, run } } => {
            let device = run.backend.device()?;
            let opts = run.options(recipe.epochs);
            atd_train::train::extractor::train(recipe, &opts, &dataset::data_dir(run.data_dir.as_deref()), &device)
        }
        Command::Train { what: TrainCommand::Atd { recipe, run } } => {
            let device = run.backend.device()?;
            let opts = run.options(recipe.epochs);
            atd_train::train::atd::train(recipe, &opts, &dataset::data_dir(run.data_dir.as_deref()), &device)
        }
    }
}

fn info(path: &Path, json: bool) -> anyhow::Result<()> {
    let bytes = atd_core::weights::read_weights_file(path).with_context(|| format!("reading {}", path.display()))?;
    let weights = atd_core::Weights::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    let card = &weights.card;
    if json {
        println!("{}", serde_json::to_string_pretty(card)?);
        return Ok(());
    }
    let e = &card.extractor;
    let params: usize = weights.tensors.values().map(|t| t.data.len()).sum();
    println!(
        "file:          {} ({} KiB, {} tensors, {params} values)",
        path.display(),
        bytes.len() / 1024,
        weights.tensors.len()
    );
    println!("format:        {}", card.format);
    println!("extractor:     {}", e.description());
    println!("               input mean {:?}, std {:?}", e.input_mean, e.input_std);
    match card.classifier {
        Some(c) => println!("classifier:    {c} classes: {}", card.class_names.join(", ")),
        None => println!("classifier:    none"),
    }
    match &card.discriminator {
        Some(d) => println!("discriminator: widths {:?}, LeakyReLU slope {}", d.widths, d.slope),
        None => println!("discriminator: none"),
    }
    if let Some(g) = &card.generator {
        println!("generator:     noise {} -> widths {:?}", g.noise_dim, g.widths);
    }
    if let Some(b) = &card.baselines {
        println!("baselines:     mahalanobis {}, openmax {}", b.mahalanobis, b.openmax.is_some());
    }
    for (detector, t) in &card.thresholds {
        println!("threshold:     {detector} = {t} (95% TPR on held-out in-distribution images)");
    }
    if !card.training.is_null() {
        println!("training:      {}", serde_json::to_string_pretty(&card.training)?);
    }
    if !card.metrics.is_null() {
        println!("metrics:       {}", serde_json::to_string_pretty(&card.metrics)?);
    }
    Ok(())
}

/// Images decoded and scored at a time.
const SCORE_BATCH: usize = 64;

fn score(path: &Path, images: &[PathBuf], backend: Backend) -> anyhow::Result<()> {
    let device = backend.device()?;
    let model = Model::load(path, &device)?.valid();
    let detectors = model.detectors();
    anyhow::ensure!(
        !detectors.is_empty() || model.card.classifier.is_some(),
        "the weights file holds no detector and no classifier"
    );
    let bar = progress::bar(images.len() as u64, "scoring");
    let mut columns: Vec<(Detector, Vec<f32>)> = detectors.iter().map(|&d| (d, Vec::new())).collect();
    let mut classes = Vec::new();
    for chunk in images.chunks(SCORE_BATCH) {
        let mut inputs = Vec::new();
        for image in chunk {
            let bytes =
                atd_core::preprocess::read_image_file(image).with_context(|| format!("reading {}", image.display()))?;
            inputs.push(
                atd_core::preprocess::image_to_input(&bytes).with_context(|| format!("image {}", image.display()))?,
            );
        }
        let x = batches::inputs_tensor(&inputs, &device);
        let features = model.features(x);
        for (d, scores) in &mut columns {
            scores.extend(to_vec(model.score_from_features(*d, features.clone())));
        }
        if model.card.classifier.is_some() {
            classes.extend(atd_train::model::argmax_rows(model.logits_from_features(features)));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let classes = model.card.classifier.map(|_| classes);
    let mut header = String::from("image");
    for (d, _) in &columns {
        header += &format!("\t{}", d.name());
    }
    if classes.is_some() {
        header += "\tclass";
    }
    println!("{header}");
    for (i, image) in images.iter().enumerate() {
        let mut line = image.display().to_string();
        for (d, s) in &columns {
            let verdict = match model.card.thresholds.get(d.name()) {
                Some(&t) if s[i] >= t => " (in)",
                Some(_) => " (OUT)",
                None => "",
            };
            line += &format!("\t{:.4}{verdict}", s[i]);
        }
        if let Some(classes) = &classes {
            let c = classes[i];
            line += &format!("\t{}", model.card.class_names.get(c).cloned().unwrap_or_else(|| c.to_string()));
        }
        println!("{line}");
    }
    Ok(())
}

struct AttackChoice {
    engine: AttackEngine,
    detector: Detector,
    direction: AttackDirection,
}

fn write_png(path: &Path, chw: &[u8]) -> anyhow::Result<()> {
    let png = atd_core::preprocess::chw_bytes_to_png(chw)?;
    std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
}

fn attack(
    weights: &Path,
    image: &Path,
    a: &AttackChoice,
    pgd: &PgdArgs,
    out: &Path,
    perturbation: Option<&Path>,
) -> anyhow::Result<()> {
    use atd_core::attack::{Direction, linf_levels, perturbation_map};
    use atd_gpu::{AttackOptions, Engine};
    let bytes =
        atd_core::weights::read_weights_file(weights).with_context(|| format!("reading {}", weights.display()))?;
    let file = atd_core::preprocess::read_image_file(image).with_context(|| format!("reading {}", image.display()))?;
    // The model sees the 32x32 image as 8-bit values, exactly what a PNG can hold.
    let clean_bytes = atd_core::preprocess::input_to_chw_bytes(
        &atd_core::preprocess::image_to_input(&file).with_context(|| format!("image {}", image.display()))?,
    );
    let clean = atd_core::preprocess::chw_bytes_to_input(&clean_bytes);
    let (detector, name) = (a.detector, a.detector.name());
    let mut engine = match a.engine {
        AttackEngine::Gpu => Some(pollster::block_on(Engine::gpu(&bytes, detector, 1))?),
        AttackEngine::Cpu => Some(Engine::cpu(&bytes, detector, 1)?),
        AttackEngine::Burn => None,
    };
    let burn_model = match engine {
        None => Some(Model::from_bytes(&bytes, &Backend::Cpu.device()?)?.valid()),
        Some(_) => None,
    };
    let score_of = |engine: &mut Option<Engine>, x: &[f32]| -> anyhow::Result<f32> {
        Ok(match engine {
            Some(e) => pollster::block_on(e.score(x))?[0],
            None => to_vec(
                burn_model.as_ref().unwrap().score(detector, batches::inputs_tensor(&[x.to_vec()], &Device::flex())),
            )[0],
        })
    };
    let clean_score = score_of(&mut engine, &clean)?;
    let card = atd_core::weights::read_card(&bytes)?;
    let threshold = card.thresholds.get(name).copied();
    let direction = match (a.direction, threshold) {
        (AttackDirection::In, _) => Direction::In,
        (AttackDirection::Out, _) => Direction::Out,
        (AttackDirection::Auto, Some(t)) if clean_score < t => Direction::In,
        (AttackDirection::Auto, _) => Direction::Out,
    };
    let options = AttackOptions::new(pgd.spec(), direction);
    let bar = progress::bar(((pgd.steps + 1) * pgd.restarts) as u64, "attacking");
    let started = std::time::Instant::now();
    let adversarial = match &mut engine {
        Some(e) => {
            let result = pollster::block_on(e.attack(&clean, &options, |_, s| {
                bar.set_message(format!("attacking: score {:.4}", s[0]));
                bar.inc(1);
                true
            }))?;
            result.adversarial
        }
        None => {
            let model = burn_model.as_ref().unwrap();
            let sign = direction.sign();
            let objective = |x: burn::tensor::Tensor<4>| model.score_logit(detector, x) * sign;
            // The best point of the attack, as the WGSL engine returns it.
            let cfg = atd_train::PgdConfig { best_of_steps: true, ..pgd.spec().into() };
            let x = batches::inputs_tensor(std::slice::from_ref(&clean), &Device::flex());
            to_vec(atd_train::pgd(&objective, &x, &cfg, |_, _| bar.inc(1)).adversarial)
        }
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let adv_bytes = atd_core::preprocess::quantize_towards_clean(&clean_bytes, &adversarial);
    let adv_score = score_of(&mut engine, &atd_core::preprocess::chw_bytes_to_input(&adv_bytes))?;
    write_png(out, &adv_bytes)?;
    let linf = linf_levels(&clean_bytes, &adv_bytes);
    if let Some(path) = perturbation {
        write_png(path, &perturbation_map(&clean_bytes, &adv_bytes, pgd.eps))?;
    }
    let verdict = |s: f32| match threshold {
        Some(t) if s >= t => " (in)",
        Some(_) => " (OUT)",
        None => "",
    };
    let engine_name = match (&engine, a.engine) {
        (Some(e), AttackEngine::Gpu) => format!("WGSL on {}", e.adapter().map(|x| x.name.clone()).unwrap_or_default()),
        (Some(_), _) => "WGSL kernels on the CPU".to_string(),
        (None, _) => "Burn (flex CPU)".to_string(),
    };
    println!("detector:   {name} (threshold {})", threshold.map(|t| format!("{t:.4}")).unwrap_or("none".into()));
    println!(
        "attack:     PGD-{} towards {direction:?}, eps {:.5}, {} restart(s), best point kept, {engine_name}, {:.1} ms/step",
        pgd.steps,
        pgd.eps,
        pgd.restarts,
        1000.0 * seconds / ((pgd.steps + 1) * pgd.restarts) as f64
    );
    println!("score:      {clean_score:.4}{} -> {adv_score:.4}{}", verdict(clean_score), verdict(adv_score));
    println!("L-inf:      {linf}/255 (eps {:.2}/255)", pgd.eps * 255.0);
    println!("wrote:      {}", out.display());
    Ok(())
}
