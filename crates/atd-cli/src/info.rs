//! `atd info`: the model card of a weights file.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `atd info`'s arguments.
#[derive(clap::Args)]
pub struct InfoArgs {
    pub weights: PathBuf,
    /// Print the raw JSON card instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    info(&args.weights, args.json)
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
        Some(c) if card.outlier_class => println!(
            "classifier:    {c} classes, the last an outlier class (ATOM; detector outlier-class): {}",
            card.class_names.join(", ")
        ),
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
