//! The `atd` command line.

use std::path::PathBuf;

use anyhow::Context;
use atd_train::{Backend, Detector, Model, batches, dataset, model::to_vec, progress};
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
    /// Train a model (progress bar, per-epoch checkpoint, `--resume`, JSON-lines log).
    Train {
        #[command(subcommand)]
        what: TrainCommand,
    },
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

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info { weights, json } => info(&weights, json),
        Command::Score { weights, images, backend } => score(&weights, &images, backend),
        Command::Toy { out, epochs, seed } => {
            println!("setting\tattacked (closed, open, generated)\tclosed-set margin\topen-set margin");
            for (s, closed, open) in atd_train::toy::run(&out, epochs, seed)? {
                println!("{}\t{} {} {}\t{closed:.3}\t{open:.3}", s.name, s.closed, s.open, s.generated);
            }
            println!("decision maps: {}/toy-*.png (blue = in, orange = out)", out.display());
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

fn info(path: &PathBuf, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let weights = atd_core::Weights::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))?;
    let card = &weights.card;
    if json {
        println!("{}", serde_json::to_string_pretty(card)?);
        return Ok(());
    }
    let e = &card.extractor;
    let params: usize = weights.tensors.values().map(|t| t.data.len()).sum();
    println!("file:          {} ({} KiB, {} tensors, {params} values)", path.display(), bytes.len() / 1024, weights.tensors.len());
    println!("format:        {}", card.format);
    println!(
        "extractor:     pre-activation ResNet, widths {:?}, blocks {:?}, {:?}, {:?} shortcut, {:?} padding, feature dim {}",
        e.widths, e.blocks, e.activation, e.shortcut, e.padding, e.feature_dim()
    );
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
        println!("threshold:     {detector} = {t} (95% TPR on in-distribution test data)");
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

fn score(path: &PathBuf, images: &[PathBuf], backend: Backend) -> anyhow::Result<()> {
    let device = backend.device()?;
    let model = Model::load(path, &device)?.valid();
    let detectors = model.detectors();
    anyhow::ensure!(!detectors.is_empty() || model.card.classifier.is_some(), "the weights file holds no detector and no classifier");
    let bar = progress::bar(images.len() as u64, "scoring");
    let mut columns: Vec<(Detector, Vec<f32>)> = detectors.iter().map(|&d| (d, Vec::new())).collect();
    let mut classes = Vec::new();
    for chunk in images.chunks(SCORE_BATCH) {
        let mut inputs = Vec::new();
        for image in chunk {
            let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
            inputs.push(atd_core::preprocess::image_to_input(&bytes).with_context(|| format!("image {}", image.display()))?);
        }
        let x = batches::inputs_tensor(&inputs, &device);
        let features = model.features(x);
        for (d, scores) in &mut columns {
            scores.extend(to_vec(model.score_from_features(*d, features.clone())));
        }
        if let Some(c) = model.card.classifier {
            let logits = to_vec(model.logits_from_features(features));
            classes.extend(logits.chunks_exact(c).map(|r| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0));
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
