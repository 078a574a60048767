//! ATD on Burn: the models, end-to-end PGD, the detectors and their baselines, and the weights
//! contract with `atd-core`. The `atd` binary (crate atd-cli) drives it.

pub mod average;
pub mod batch_norm;
pub mod batches;
pub mod bench;
pub mod conv;
pub mod dataset;
pub mod detectors;
pub mod eval;
mod eval_cache;
pub mod fit;
mod flex;
pub mod io;
pub mod model;
pub mod pgd;
pub mod progress;
pub mod rng;
pub mod synthetic;
pub mod toy;
pub mod train;
pub mod usage;

pub use detectors::Detector;
pub use model::Model;
pub use pgd::{PgdConfig, pgd};

use burn::tensor::Device;

/// Which Burn backend to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Burn's flex CPU backend (the default; what tests use).
    Cpu,
    /// Burn's wgpu backend on the first GPU (needs the `wgpu` cargo feature).
    Wgpu,
}

impl Backend {
    pub fn device(self) -> anyhow::Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => anyhow::bail!("this build has no wgpu backend: rebuild with `--features wgpu`"),
        }
    }
}
