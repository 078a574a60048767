//! What the CPU kernels (`conv`, `batch_norm`) share: flex's tensor primitive as plain `f32`
//! slices and back, and whether a tensor runs on flex.

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{DispatchDevice, Flex};
use burn::tensor::{Device, TensorData};
use rayon::prelude::*;

pub(crate) type FlexTensor = FloatTensor<Flex>;

pub(crate) fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    Flex::float_from_data(TensorData::new(values, shape), &Default::default())
}

pub(crate) fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// Whether `device` is flex, with or without autodiff.
pub(crate) fn is_flex(device: &Device) -> bool {
    matches!(device.as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}

/// `len` zeros, written by all threads: an output buffer the size of an activation, which the
/// calling thread alone would otherwise clear while the others wait.
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    values.par_extend(rayon::iter::repeat_n(0.0f32, len));
    values
}

/// What the kernels' tests compare with.
#[cfg(test)]
pub(crate) mod testing {
    use burn::tensor::{Device, Tensor};

    use crate::model::{tensor_from, to_vec};
    use crate::rng::Rng;

    /// Values drawn uniformly from [lo, hi), of `shape`, on `device`.
    pub fn random<const D: usize>(shape: [usize; D], lo: f32, hi: f32, rng: &mut Rng, device: &Device) -> Tensor<D> {
        tensor_from((0..shape.iter().product()).map(|_| lo + (hi - lo) * rng.uniform()).collect(), shape, device)
    }

    /// The largest absolute difference between two tensors' values.
    pub fn max_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        to_vec(a).iter().zip(to_vec(b)).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }
}
