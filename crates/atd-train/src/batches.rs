//! Moving preprocessed images into tensors.

use atd_core::IMAGE_SIZE;
use burn::tensor::{Device, Tensor};

use crate::model::tensor_from;

/// Preprocessed CHW inputs as a `[B, 3, 32, 32]` tensor.
pub fn inputs_tensor(inputs: &[Vec<f32>], device: &Device) -> Tensor<4> {
    tensor_from(inputs.concat(), [inputs.len(), 3, IMAGE_SIZE, IMAGE_SIZE], device)
}
