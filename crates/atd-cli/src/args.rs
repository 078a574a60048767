//! Arguments several commands share: the PGD attack, the test data, a transfer source, and
//! picking a detector from a weights file.

use std::path::PathBuf;

use anyhow::Context;
use atd_core::attack::AttackSpec;
use atd_core::data::ImageSet;
use atd_train::{Detector, Model, dataset};
use burn::tensor::Device;

/// The end-to-end L-infinity PGD attack (step size 2.5 eps / steps, uniform random start).
#[derive(clap::Args)]
pub struct PgdArgs {
    /// Radius, e.g. 8/255.
    #[arg(long, default_value = "8/255", value_parser = atd_train::train::parse_fraction)]
    pub eps: f32,
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Random restarts; the per-sample best is kept.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
}

impl PgdArgs {
    pub fn spec(&self) -> AttackSpec {
        AttackSpec::new(self.eps, self.steps).with_restarts(self.restarts).with_seed(self.seed)
    }
}

/// The test data of an evaluation.
#[derive(clap::Args)]
pub struct DataArgs {
    /// In-distribution test set inside the data pack.
    #[arg(long = "in", default_value = "cifar10-test.bin")]
    pub in_set: String,
    /// OOD test sets inside the data pack, comma-separated; `synthetic:<family>` draws a
    /// procedural family instead (e.g. the validation families synthetic:star-field,
    /// synthetic:cells, synthetic:fractal-texture, synthetic:pen-curves).
    #[arg(
        long = "out",
        value_delimiter = ',',
        default_value = "mnist-test.bin,tinyimagenet-test.bin,flowers102-32.bin,coil100-32.bin,dtd10-32.bin,cifar100-mixed.bin"
    )]
    pub out_sets: Vec<String>,
    /// In-distribution images used, the first N (default 1000; check: 200).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per OOD set, the first N (default 500; check: 100).
    #[arg(long)]
    pub out_limit: Option<usize>,
    /// The data pack folder (default: $ATD_DATA, else ../shared/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    pub fn load(&self, limit: usize, out_limit: usize) -> anyhow::Result<(ImageSet, Vec<(String, ImageSet)>)> {
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
pub struct TransferArgs {
    /// Also attack with FGSM crafted on this weights file's detector (black-box transfer).
    #[arg(long)]
    pub transfer_from: Option<PathBuf>,
    /// The source detector (default: its first one).
    #[arg(long, value_enum)]
    pub transfer_detector: Option<Detector>,
}

impl TransferArgs {
    pub fn load(&self, device: &Device) -> anyhow::Result<Option<(Model, Detector, String)>> {
        let Some(path) = &self.transfer_from else { return Ok(None) };
        let model = Model::load(path, device)?.valid();
        let detector = pick_detector(&model, self.transfer_detector)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Some((model, detector, name)))
    }
}

/// The requested detector, or the file's first one; an error when the file lacks it.
pub fn pick_detector(model: &Model, wanted: Option<Detector>) -> anyhow::Result<Detector> {
    let available = model.detectors();
    let detector = wanted.or_else(|| available.first().copied()).context("the weights file holds no detector")?;
    anyhow::ensure!(available.contains(&detector), "{} is not in this file (it has {:?})", detector.name(), available);
    Ok(detector)
}
