//! Exponential moving average of a module's weights (Polyak averaging, as robust training
//! recipes use it): the average of the last iterates, rather than the last one, is what
//! validation scores and the exported file holds. BatchNorm's running statistics are averaged
//! with the weights.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// The decay of update `t` (counted from 0): `decay`, warmed up as `(1 + t) / (10 + t)` so the
/// first updates follow the live weights instead of freezing the starting point into the average.
pub fn warmed_up_decay(decay: f64, t: usize) -> f64 {
    decay.min((1.0 + t as f64) / (10.0 + t as f64))
}

/// `average * decay + live * (1 - decay)`, tensor by tensor (the result holds plain tensors,
/// without autodiff, whatever device `live` trains on).
pub fn update<M: Module>(average: M, live: &M, decay: f64) -> M {
    let mut values = Collect(Vec::new());
    live.valid().visit(&mut values);
    let mut blend = Blend { live: values.0.into_iter(), decay };
    let average = average.valid().map(&mut blend);
    assert!(blend.live.next().is_none(), "the average and the live module differ in structure");
    average
}

/// Every float tensor of a module, flattened, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

/// Blends each float tensor of the average with the next collected live one (same order).
struct Blend<I: Iterator<Item = Tensor<1>>> {
    live: I,
    decay: f64,
}

impl<I: Iterator<Item = Tensor<1>>> ModuleMapper for Blend<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let live = self.live.next().expect("the average and the live module differ in structure");
        let decay = self.decay;
        param.map(|average| {
            let shape = average.shape();
            assert_eq!(shape.num_elements(), live.dims()[0], "the average and the live module differ in shape");
            average * decay + live.reshape(shape) * (1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Discriminator, tensor_from, to_vec};
    use atd_core::card::DiscriminatorSpec;
    use burn::tensor::Device;

    fn tensors(module: &impl Module) -> Vec<Vec<f32>> {
        let mut values = Collect(Vec::new());
        module.visit(&mut values);
        values.0.into_iter().map(to_vec).collect()
    }

    #[test]
    fn the_average_blends_every_weight_and_batch_norm_statistic() {
        let device = Device::flex();
        let spec = DiscriminatorSpec::for_features(16);
        let average = Discriminator::new(&spec, 16, &device);
        let live = Discriminator::new(&spec, 16, &device.clone().autodiff());
        // A forward pass in training mode moves the live BatchNorm statistics.
        let features: Vec<f32> = (0..8 * 16).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        live.forward(tensor_from(features, [8, 16], &device.clone().autodiff()));
        // `valid` brings the running statistics up to date (a visit alone may see them one update old).
        let (a, b) = (tensors(&average), tensors(&live.valid()));
        // One weight per layer, and gamma, beta, running mean and variance per hidden BatchNorm.
        let batch_norms = spec.widths.len() - 1;
        assert_eq!(a.len(), spec.widths.len() + 1 + 4 * batch_norms);
        // All differ before blending but the BatchNorm betas (zero in both).
        assert_eq!(a.iter().zip(&b).filter(|(x, y)| x != y).count(), a.len() - batch_norms);
        let blended = tensors(&update(average, &live, 0.75));
        for ((x, y), z) in a.iter().flatten().zip(b.iter().flatten()).zip(blended.iter().flatten()) {
            assert!((0.75 * x + 0.25 * y - z).abs() <= 1e-6 * (1.0 + x.abs() + y.abs()), "{x} {y} {z}");
        }
    }

    #[test]
    fn the_decay_warms_up_to_its_setting() {
        assert_eq!(warmed_up_decay(0.999, 0), 0.1);
        assert!(warmed_up_decay(0.999, 10) < warmed_up_decay(0.999, 100));
        assert_eq!(warmed_up_decay(0.99, 100_000), 0.99);
    }
}
