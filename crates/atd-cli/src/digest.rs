//! `atd digest`: content digests of weights files.

use std::path::PathBuf;

use anyhow::Context;

/// `atd digest`'s arguments.
#[derive(clap::Args)]
pub struct DigestArgs {
    #[arg(required = true)]
    pub weights: Vec<PathBuf>,
}

pub fn run(args: DigestArgs) -> anyhow::Result<()> {
    for path in args.weights {
        let bytes =
            atd_core::weights::read_weights_file(&path).with_context(|| format!("reading {}", path.display()))?;
        let digest = atd_core::digest::weights_digest(&bytes).with_context(|| format!("reading {}", path.display()))?;
        println!("{digest}  {}", path.display());
    }
    Ok(())
}
