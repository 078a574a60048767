//! `atd train extractor` and `atd train atd`.

use std::path::PathBuf;

use atd_train::{Backend, dataset};

#[derive(clap::Subcommand)]
pub enum TrainCommand {
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
pub struct RunArgs {
    /// Run folder: log.jsonl, checkpoint/, best.safetensors and the exported weights.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the checkpoint in --out (the recipe must match; --epochs may grow).
    #[arg(long)]
    pub resume: bool,
    /// Stop cleanly after this many epochs of this invocation (continue later with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// The data pack folder (default: $ATD_DATA, else ../shared/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
}

impl RunArgs {
    fn options(&self, epochs: usize) -> atd_train::train::RunOptions {
        atd_train::train::RunOptions { out: self.out.clone(), epochs, resume: self.resume, stop_after: self.stop_after }
    }
}

pub fn run(what: TrainCommand) -> anyhow::Result<()> {
    match what {
        TrainCommand::Extractor { recipe, run } => {
            let device = run.backend.device()?;
            let opts = run.options(recipe.epochs);
            atd_train::train::extractor::train(recipe, &opts, &dataset::data_dir(run.data_dir.as_deref()), &device)
        }
        TrainCommand::Atd { recipe, run } => {
            let device = run.backend.device()?;
            let opts = run.options(recipe.epochs);
            atd_train::train::atd::train(recipe, &opts, &dataset::data_dir(run.data_dir.as_deref()), &device)
        }
    }
}
