//! Moving image sets into tensors in batches, and batched inference over a whole set.

use atd_core::IMAGE_SIZE;
use atd_core::data::ImageSet;
use burn::tensor::{Device, Tensor};

use crate::detectors::Detector;
use crate::model::{Model, tensor_from, to_vec};

/// Images `indices` of `set` as a `[B, 3, 32, 32]` tensor in [0,1].
pub fn images_tensor(set: &ImageSet, indices: &[usize], device: &Device) -> Tensor<4> {
    let values: Vec<f32> = indices.iter().flat_map(|&i| set.image(i).iter().map(|&b| b as f32 / 255.0)).collect();
    tensor_from(values, [indices.len(), 3, IMAGE_SIZE, IMAGE_SIZE], device)
}

/// Preprocessed CHW inputs as a `[B, 3, 32, 32]` tensor.
pub fn inputs_tensor(inputs: &[Vec<f32>], device: &Device) -> Tensor<4> {
    tensor_from(inputs.concat(), [inputs.len(), 3, IMAGE_SIZE, IMAGE_SIZE], device)
}

/// Run `f` over `set` in batches of `batch` and concatenate its per-sample outputs.
pub fn map_batches(set: &ImageSet, batch: usize, device: &Device, mut f: impl FnMut(Tensor<4>) -> Vec<f32>, mut progress: impl FnMut(usize)) -> Vec<f32> {
    let mut out = Vec::new();
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        out.extend(f(images_tensor(set, chunk, device)));
        progress(chunk.len());
    }
    out
}

/// Scores of `detector` on every image of `set` (eval mode).
pub fn scores(model: &Model, detector: Detector, set: &ImageSet, batch: usize, device: &Device, progress: impl FnMut(usize)) -> Vec<f32> {
    map_batches(set, batch, device, |x| to_vec(model.score(detector, x)), progress)
}
