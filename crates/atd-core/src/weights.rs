//! Loading and validating a weights file: safetensors whose `__metadata__` holds the model card.
//! Every tensor the card implies must be present with the right shape, be f32 or f16, and be
//! finite; nothing else may be in the file. Errors name the offending tensor.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};

use crate::card::{CARD_METADATA_KEY, ModelCard};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightsError {
    #[error("not a safetensors file: {0}")]
    Format(String),
    #[error("the file has no model card (metadata key {CARD_METADATA_KEY:?}); was it exported by atd-train?")]
    NoCard,
    #[error("invalid model card: {0}")]
    Card(String),
    #[error("tensor {name:?} is missing (the model card's architecture needs it)")]
    Missing { name: String },
    #[error("tensor {name:?} has shape {found:?}, the model card needs {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor {name:?} has dtype {found}, only F32 and F16 are supported")]
    Dtype { name: String, found: String },
    #[error("tensor {name:?} holds a non-finite value ({value}) at flat index {index}")]
    NonFinite { name: String, index: usize, value: f32 },
    #[error("tensor {name:?} is not part of the architecture in the model card")]
    Unexpected { name: String },
}

/// One validated tensor, upcast to f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A validated weights file.
#[derive(Clone, Debug)]
pub struct Weights {
    pub card: ModelCard,
    pub tensors: BTreeMap<String, NamedTensor>,
}

impl Weights {
    /// Parse and validate the bytes of a weights file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightsError> {
        let card = read_card(bytes)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Format(e.to_string()))?;
        let expected = card.expected_tensors();
        let mut tensors = BTreeMap::new();
        for (name, shape) in &expected {
            let view = st.tensor(name).map_err(|_| WeightsError::Missing { name: name.clone() })?;
            if view.shape() != shape.as_slice() {
                return Err(WeightsError::Shape {
                    name: name.clone(),
                    expected: shape.clone(),
                    found: view.shape().to_vec(),
                });
            }
            let data = to_f32(name, view.dtype(), view.data())?;
            if let Some((index, value)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(WeightsError::NonFinite { name: name.clone(), index, value: *value });
            }
            tensors.insert(name.clone(), NamedTensor { shape: shape.clone(), data });
        }
        if let Some(name) = st.names().into_iter().find(|n| !tensors.contains_key(*n)) {
            return Err(WeightsError::Unexpected { name: name.to_string() });
        }
        Ok(Self { card, tensors })
    }

    pub fn get(&self, name: &str) -> &NamedTensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("validated weights lack {name:?}"))
    }
}

/// Largest weights file read (the paper's PreActResNet-18 is 45 MiB in f32).
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 1 << 30;

/// Read a weights file's bytes, refusing one over `MAX_WEIGHTS_FILE_BYTES` before reading it.
pub fn read_weights_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    crate::file::read_limited(path, MAX_WEIGHTS_FILE_BYTES, "weights file")
}

/// Read only the model card from the safetensors header (cheap: no tensor is touched).
pub fn read_card(bytes: &[u8]) -> Result<ModelCard, WeightsError> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| WeightsError::Format(e.to_string()))?;
    let text = meta.metadata().as_ref().and_then(|m| m.get(CARD_METADATA_KEY)).ok_or(WeightsError::NoCard)?;
    ModelCard::from_json(text).map_err(WeightsError::Card)
}

fn to_f32(name: &str, dtype: Dtype, raw: &[u8]) -> Result<Vec<f32>, WeightsError> {
    match dtype {
        Dtype::F32 => Ok(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        Dtype::F16 => Ok(raw.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()),
        other => Err(WeightsError::Dtype { name: name.to_string(), found: format!("{other:?}") }),
    }
}

/// IEEE 754 half to single precision (exact; subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if mant == 0 => sign,
        // Subnormal half: value = mant * 2^-24, exact in f32.
        0 => {
            let magnitude = mant as f32 * 2f32.powi(-24);
            return if sign != 0 { -magnitude } else { magnitude };
        }
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// Serialise tensors (f32, row-major) and a card into a weights file. Used by tests and tools
/// that write files without Burn; `atd-train` exports through Burn's store with the same layout.
pub fn write_weights(card: &ModelCard, tensors: &BTreeMap<String, NamedTensor>) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).expect("consistent shape")))
        .collect();
    let meta = std::collections::HashMap::from([(CARD_METADATA_KEY.to_string(), card.to_json())]);
    safetensors::serialize(views, Some(meta)).expect("serialising in memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{ExtractorSpec, ModelCard};

    fn card() -> ModelCard {
        ModelCard::classifier(ExtractorSpec::tiny())
    }

    fn tensors(card: &ModelCard) -> BTreeMap<String, NamedTensor> {
        card.expected_tensors()
            .into_iter()
            .map(|(n, s)| {
                let len = s.iter().product();
                (n, NamedTensor { shape: s, data: (0..len).map(|i| i as f32 * 0.01).collect() })
            })
            .collect()
    }

    #[test]
    fn round_trip_of_a_valid_file() {
        let c = card();
        let t = tensors(&c);
        let w = Weights::from_bytes(&write_weights(&c, &t)).unwrap();
        assert_eq!(w.card, c);
        assert_eq!(w.tensors, t);
    }

    #[test]
    fn missing_tensor_is_named() {
        let c = card();
        let mut t = tensors(&c);
        t.remove("extractor.blocks.1.conv1.weight");
        let err = Weights::from_bytes(&write_weights(&c, &t)).unwrap_err();
        assert_eq!(err, WeightsError::Missing { name: "extractor.blocks.1.conv1.weight".into() });
        assert!(err.to_string().contains("extractor.blocks.1.conv1.weight"));
    }

    #[test]
    fn wrong_shape_is_named() {
        let c = card();
        let mut t = tensors(&c);
        t.insert("classifier.weight".into(), NamedTensor { shape: vec![10, 8], data: vec![0.0; 80] });
        let err = Weights::from_bytes(&write_weights(&c, &t)).unwrap_err().to_string();
        assert!(err.contains("\"classifier.weight\"") && err.contains("[10, 8]") && err.contains("[8, 10]"), "{err}");
    }

    #[test]
    fn nan_is_named() {
        let c = card();
        let mut t = tensors(&c);
        t.get_mut("extractor.final_bn.running_var").unwrap().data[3] = f32::NAN;
        let err = Weights::from_bytes(&write_weights(&c, &t)).unwrap_err();
        assert!(
            matches!(&err, WeightsError::NonFinite { name, index: 3, .. } if name == "extractor.final_bn.running_var"),
            "{err}"
        );
    }

    #[test]
    fn extra_tensor_and_missing_card_are_rejected() {
        let c = card();
        let mut t = tensors(&c);
        t.insert("stray".into(), NamedTensor { shape: vec![1], data: vec![0.0] });
        assert_eq!(
            Weights::from_bytes(&write_weights(&c, &t)).unwrap_err(),
            WeightsError::Unexpected { name: "stray".into() }
        );
        let no_card = safetensors::serialize(Vec::<(String, safetensors::tensor::TensorView)>::new(), None).unwrap();
        assert_eq!(Weights::from_bytes(&no_card).unwrap_err(), WeightsError::NoCard);
        assert!(matches!(Weights::from_bytes(b"garbage"), Err(WeightsError::Format(_))));
    }

    #[test]
    fn f16_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
