//! Export and import of models through the weights file (see `atd_core::weights`).

use anyhow::{Context, bail};
use atd_core::Weights;
use atd_core::card::CARD_METADATA_KEY;
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use crate::model::Model;

impl Model {
    /// Serialise to a weights file (safetensors + model card), checked against the contract.
    /// The bytes are canonical (tensors by name, the card as the only metadata key), so the same
    /// weights and card always give the same file: Burn's own export orders its header keys
    /// differently on every call.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut store = SafetensorsStore::from_bytes(None).metadata(CARD_METADATA_KEY, self.card.to_json());
        let mut net = self.net.valid();
        // Training-time modules only: the file holds what its card describes.
        net.image_generator = None;
        net.rotation_head = None;
        net.save_into(&mut store).map_err(|e| anyhow::anyhow!("exporting tensors: {e}"))?;
        let bytes = store.get_bytes().map_err(|e| anyhow::anyhow!("serialising weights: {e}"))?;
        let weights = Weights::from_bytes(&bytes)
            .context("the exported file breaks the weights contract (a bug in atd-train)")?;
        Ok(atd_core::weights::write_weights(&weights.card, &weights.tensors))
    }

    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let bytes = self.to_bytes()?;
        // Write to a sibling then rename, so an interrupted save never leaves a truncated file.
        let tmp = path.with_extension("safetensors.partial");
        std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Load a weights file: validate it (names, shapes, dtypes, finiteness), build the card's
    /// architecture and fill it.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> anyhow::Result<Self> {
        let weights = Weights::from_bytes(bytes)?;
        let mut model = Model::new(weights.card.clone(), device)?;
        // Re-serialise the validated (f16-upcast) tensors so Burn only ever sees f32.
        let canonical = atd_core::weights::write_weights(&weights.card, &weights.tensors);
        let result = model
            .net
            .load_from(&mut SafetensorsStore::from_bytes(Some(canonical)))
            .map_err(|e| anyhow::anyhow!("loading tensors into the model: {e}"))?;
        if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
            bail!(
                "weights do not fit the model built from the card: errors {:?}, missing {:?}, unused {:?}",
                result.errors,
                result.missing,
                result.unused
            );
        }
        Ok(model)
    }

    pub fn load(path: &std::path::Path, device: &Device) -> anyhow::Result<Self> {
        let bytes =
            atd_core::weights::read_weights_file(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(&bytes, device).with_context(|| format!("loading weights {}", path.display()))
    }
}
