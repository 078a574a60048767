//! Helpers shared by the cross-crate tests: weights files of random models whose every part
//! does something (BatchNorm statistics away from identity, a discriminator with unit gain).

use atd_core::card::{DiscriminatorSpec, ExtractorSpec, ModelCard};
use atd_core::weights::{NamedTensor, Weights, write_weights};
use atd_train::Model;
use burn::tensor::Device;

/// A card with a classifier head and a discriminator on `extractor`.
pub fn card(extractor: ExtractorSpec) -> ModelCard {
    let f = extractor.feature_dim();
    let mut card = ModelCard::classifier(extractor);
    card.discriminator = Some(DiscriminatorSpec::for_features(f));
    card
}

/// The weights file of a randomly initialised model of `card`: random BatchNorm statistics,
/// and the discriminator's N(0, 0.02) layers rescaled to unit gain (an untrained DCGAN
/// discriminator is otherwise almost constant in its input).
pub fn random_weights(card: ModelCard, seed: u64) -> Vec<u8> {
    let device = Device::flex();
    let mut model = {
        // Burn's generator is global: parallel tests must not interleave seeding and drawing.
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        Model::new(card, &device).unwrap()
    };
    model.randomise_batch_norm_statistics(seed);
    let mut weights = Weights::from_bytes(&model.to_bytes().unwrap()).unwrap();
    for (name, t) in weights.tensors.iter_mut() {
        if name.starts_with("discriminator.") && name.ends_with("linear.weight")
            || name == "discriminator.output.weight"
        {
            rescale(t);
        }
    }
    write_weights(&weights.card, &weights.tensors)
}

fn rescale(t: &mut NamedTensor) {
    let fan_in = t.shape[0] as f32;
    for v in &mut t.data {
        *v /= 0.02 * fan_in.sqrt();
    }
}

/// Images in [0,1] (with exact 0s and 1s), `n * 3 * 32 * 32` values.
pub fn images(n: usize, seed: u32) -> Vec<f32> {
    (0..n * atd_core::IMAGE_VALUES)
        .map(|i| match i % 23 {
            0 => 0.0,
            1 => 1.0,
            _ => (atd_core::noise::noise(seed, i as u32) + 1.0) / 2.0,
        })
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
