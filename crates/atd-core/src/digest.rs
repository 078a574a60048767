//! Stable, content-addressed digests (SHA-256 in hex) for cache keys and for comparing weight
//! files: the same content gives the same digest on every machine and Rust version.

use sha2::{Digest as _, Sha256};

use crate::weights::{Weights, WeightsError, write_weights};

/// A digest built from a sequence of parts; each part is length-prefixed, so ("ab", "c") and
/// ("a", "bc") differ.
#[derive(Clone, Default)]
pub struct Digest(Sha256);

impl Digest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn part(mut self, bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn hex(self) -> String {
        self.0.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The digest of a weights file's content: its tensors and card, whatever order the file's
/// header lists them in (files written by other tools, or by Burn directly, order it freely).
pub fn weights_digest(bytes: &[u8]) -> Result<String, WeightsError> {
    let weights = Weights::from_bytes(bytes)?;
    Ok(Digest::new().part(write_weights(&weights.card, &weights.tensors)).hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_of_length_prefixed_parts() {
        // Pinned: a digest must not change between builds, or every cache is lost.
        assert_eq!(Digest::new().hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_ne!(Digest::new().part("ab").part("c").hex(), Digest::new().part("a").part("bc").hex());
        assert_eq!(Digest::new().part("x").hex(), Digest::new().part("x").hex());
    }

    #[test]
    fn a_weights_file_digest_ignores_how_the_header_is_written() {
        use crate::card::{CARD_METADATA_KEY, ExtractorSpec, ModelCard};
        let card = ModelCard::classifier(ExtractorSpec::tiny());
        let tensors: std::collections::BTreeMap<_, _> = card
            .expected_tensors()
            .into_iter()
            .map(|(n, s)| {
                (
                    n,
                    crate::NamedTensor {
                        data: (0..s.iter().product::<usize>()).map(|i| i as f32 * 0.5).collect(),
                        shape: s,
                    },
                )
            })
            .collect();
        let canonical = write_weights(&card, &tensors);
        // Another writer: an extra metadata key (as Burn's store adds), tensors in another order.
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .rev()
            .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
            })
            .collect();
        let meta = std::collections::HashMap::from([
            ("format".to_string(), "other".to_string()),
            (CARD_METADATA_KEY.to_string(), card.to_json()),
        ]);
        let other = safetensors::serialize(views, Some(meta)).unwrap();
        assert_ne!(other, canonical);
        assert_eq!(weights_digest(&other).unwrap(), weights_digest(&canonical).unwrap());
        let mut changed = tensors.clone();
        changed.values_mut().next().unwrap().data[0] += 1.0;
        assert_ne!(weights_digest(&write_weights(&card, &changed)).unwrap(), weights_digest(&canonical).unwrap());
    }
}
