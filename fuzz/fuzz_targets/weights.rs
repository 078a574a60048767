//! The weights file: safetensors header, dtypes, shapes, the model card JSON. A file that loads
//! must survive a write and a reload unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(weights) = atd_core::Weights::from_bytes(data) else { return };
    let rewritten = atd_core::weights::write_weights(&weights.card, &weights.tensors);
    let again = atd_core::Weights::from_bytes(&rewritten).expect("a rewritten valid file loads");
    assert_eq!(again.tensors, weights.tensors);
    assert_eq!(again.card, weights.card);
});
