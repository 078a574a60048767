//! `atd score`: every detector's score of images of any size and format.

use std::path::{Path, PathBuf};

use anyhow::Context;
use atd_train::{Backend, Detector, Model, batches, model::to_vec, progress};

/// `atd score`'s arguments.
#[derive(clap::Args)]
pub struct ScoreArgs {
    pub weights: PathBuf,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    score(&args.weights, &args.images, args.backend)
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
