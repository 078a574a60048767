//! Export and import through the weights file.

mod common;

use atd_core::card::ExtractorSpec;
use atd_train::{Detector, Model};
use common::*;

#[test]
fn every_part_survives_a_round_trip() {
    let model = random_model(full_card(ExtractorSpec::tiny(), 3), 7);
    let bytes = model.to_bytes().unwrap();
    // The file satisfies the atd-core contract (to_bytes also checks this).
    let weights = atd_core::Weights::from_bytes(&bytes).unwrap();
    assert_eq!(weights.card, model.card);

    let device = device();
    device.seed(999); // a differently initialised model underneath
    let loaded = Model::from_bytes(&bytes, &device).unwrap().valid();
    let original = model.valid();
    // Every detector but ATOM's, which needs a classifier with an outlier class.
    let all_but_outlier_class: Vec<Detector> =
        Detector::ALL.into_iter().filter(|d| *d != Detector::OutlierClass).collect();
    assert_eq!(loaded.detectors(), all_but_outlier_class);
    let x = random_images(4, 3, &device);
    for d in all_but_outlier_class {
        assert_eq!(scores(&original, d, &x), scores(&loaded, d, &x), "{d:?}");
    }
    // Generator weights are part of the file too.
    let z = atd_train::model::tensor_from(vec![0.5; 12], [2, 6], &device);
    let (g1, g2) = (original.net.generator.as_ref().unwrap(), loaded.net.generator.as_ref().unwrap());
    assert_eq!(atd_train::model::to_vec(g1.forward(z.clone())), atd_train::model::to_vec(g2.forward(z)));
}

#[test]
fn a_denoising_extractor_survives_a_round_trip_and_changes_the_features() {
    let model = denoising_model(ExtractorSpec::tiny(), 8);
    let bytes = model.to_bytes().unwrap();
    let weights = atd_core::Weights::from_bytes(&bytes).unwrap();
    assert!(weights.tensors.contains_key("extractor.denoise.0.output.weight"));
    let device = device();
    let loaded = Model::from_bytes(&bytes, &device).unwrap().valid();
    let x = random_images(4, 3, &device);
    for d in [Detector::Msp, Detector::Md, Detector::Atd] {
        assert_eq!(scores(&model.valid(), d, &x), scores(&loaded, d, &x), "{d:?}");
    }
    // The block is in the forward pass: without it (its output at zero again) the features move.
    let mut identity = Model::from_bytes(&bytes, &device).unwrap();
    let output = &mut identity.net.extractor.denoise[0].output;
    output.weight = burn::module::Param::from_tensor(output.weight.val().zeros_like());
    assert_ne!(scores(&identity.valid(), Detector::Md, &x), scores(&loaded, Detector::Md, &x));
}

#[test]
fn the_same_weights_and_card_give_the_same_bytes() {
    let model = random_model(full_card(ExtractorSpec::tiny(), 3), 7);
    let first = model.to_bytes().unwrap();
    // Burn's export alone orders its header keys differently from call to call.
    for _ in 0..4 {
        assert!(model.to_bytes().unwrap() == first, "a second export of the same model differs");
    }
    // And a file read back and written again is the same file.
    let reloaded = Model::from_bytes(&first, &device()).unwrap();
    assert!(reloaded.to_bytes().unwrap() == first, "load + export changed the bytes");
}

#[test]
fn a_file_that_does_not_match_its_card_is_rejected_with_the_tensor_name() {
    let model = random_model(full_card(ExtractorSpec::tiny(), 3), 1);
    let bytes = model.to_bytes().unwrap();
    let mut weights = atd_core::Weights::from_bytes(&bytes).unwrap();
    // Claim a wider discriminator than the tensors hold.
    weights.card.discriminator.as_mut().unwrap().widths[1] += 1;
    let forged = atd_core::weights::write_weights(&weights.card, &weights.tensors);
    let err = format!("{:#}", Model::from_bytes(&forged, &device()).unwrap_err());
    assert!(err.contains("discriminator.hidden.1.linear.weight"), "{err}");
}

#[test]
fn paper_extractor_matches_the_reference_layer_for_layer() {
    // DeepMind PreActResNet-18 Swish without its logits layer: 12,535,488 conv weights plus
    // 7,808 BatchNorm affine parameters (atd-reference.md section 8).
    let card = atd_core::ModelCard {
        classifier: None,
        class_names: vec![],
        ..atd_core::ModelCard::classifier(ExtractorSpec::preact_resnet18_swish())
    };
    let expected = card.expected_tensors();
    let conv: usize =
        expected.iter().filter(|(n, _)| n.ends_with(".weight")).map(|(_, s)| s.iter().product::<usize>()).sum();
    let affine: usize =
        expected.iter().filter(|(n, _)| n.ends_with(".gamma") || n.ends_with(".beta")).map(|(_, s)| s[0]).sum();
    assert_eq!((conv, affine), (12_535_488, 7_808));
    // Every strided block has a 3x3 shortcut, as in the reference.
    let shortcuts: Vec<&Vec<usize>> = expected.iter().filter(|(n, _)| n.contains("shortcut")).map(|(_, s)| s).collect();
    assert_eq!(shortcuts, vec![&vec![128, 64, 3, 3], &vec![256, 128, 3, 3], &vec![512, 256, 3, 3]]);
    let device = device();
    let model = Model::new(card, &device).unwrap();
    let out = model.valid().features(random_images(1, 0, &device));
    assert_eq!(out.dims(), [1, 512]);
}
