//! Shared core of atd-web: the weights-file contract, image preprocessing, OOD metrics,
//! dataset readers, and the vocabulary of detectors and attacks (`attack`). No Burn and no
//! wgpu, so it builds for wasm32 and every crate can use it.

pub mod attack;
pub mod card;
pub mod data;
pub mod digest;
pub mod file;
pub mod metrics;
pub mod noise;
pub mod preprocess;
pub mod weights;
mod zip;

pub use card::ModelCard;
pub use weights::{NamedTensor, Weights, WeightsError};

/// Side of the square model input (CIFAR resolution).
pub const IMAGE_SIZE: usize = 32;
/// Values in one CHW model input.
pub const IMAGE_VALUES: usize = 3 * IMAGE_SIZE * IMAGE_SIZE;
