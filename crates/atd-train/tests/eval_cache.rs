//! The evaluation cache `atd report` resumes from: an entry is found again exactly when the
//! evaluated weights, the attacking model, the attack and the images are the same.

mod common;

use atd_core::attack::Setting;
use atd_core::card::ExtractorSpec;
use atd_core::data::ImageSet;
use atd_train::eval::{Attack, AttackKind, EvalCache, EvalData, evaluate};
use atd_train::pgd::PgdConfig;
use atd_train::rng::Rng;
use atd_train::{Detector, Model};
use common::*;

fn image_set(n: usize, seed: u64) -> ImageSet {
    let mut rng = Rng::new(seed);
    ImageSet {
        pixels: (0..n * atd_core::IMAGE_VALUES).map(|_| (rng.uniform() * 255.0) as u8).collect(),
        labels: (0..n).map(|i| (i % 3) as u16).collect(),
        class_names: Vec::new(),
    }
}

fn entries(cache: &EvalCache) -> usize {
    std::fs::read_dir(&cache.dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn an_entry_is_reused_exactly_when_the_weights_attack_and_images_are_the_same() {
    let dir = scratch("atd-eval-cache");
    let cache = EvalCache::new(dir.clone());
    let device = device();
    let model = random_model(full_card(ExtractorSpec::tiny(), 3), 1).valid();
    let other = random_model(full_card(ExtractorSpec::tiny(), 3), 2).valid();
    let in_set = image_set(6, 3);
    let out_sets = vec![("noise".to_string(), image_set(4, 4))];
    let data = EvalData { in_set: &in_set, out_sets: &out_sets, cache: Some(&cache) };
    let pgd = Attack::new(AttackKind::Pgd, PgdConfig::new(8.0 / 255.0, 2));

    let first = evaluate(&model, Detector::Msp, &data, &pgd, &device);
    assert_eq!((entries(&cache), cache.hits.get()), (1, 0));
    // The same weights loaded again (another Model value): read back, same numbers.
    let reloaded = Model::from_bytes(&model.to_bytes().unwrap(), &device).unwrap().valid();
    let again = evaluate(&reloaded, Detector::Msp, &data, &pgd, &device);
    assert_eq!((entries(&cache), cache.hits.get()), (1, 1));
    assert_eq!(Setting::ALL.map(|s| again.auroc(s)), Setting::ALL.map(|s| first.auroc(s)));

    // Other weights, another detector, another attack budget, a changed pixel: each a new entry.
    evaluate(&other, Detector::Msp, &data, &pgd, &device);
    evaluate(&model, Detector::Atd, &data, &pgd, &device);
    evaluate(&model, Detector::Msp, &data, &Attack::new(AttackKind::Pgd, PgdConfig::new(4.0 / 255.0, 2)), &device);
    let mut changed = in_set.clone();
    changed.pixels[0] = changed.pixels[0].wrapping_add(1);
    evaluate(&model, Detector::Msp, &EvalData { in_set: &changed, ..data }, &pgd, &device);
    assert_eq!((entries(&cache), cache.hits.get()), (5, 1));

    // A transfer attack is keyed by the model it is crafted on, not only by its name.
    evaluate(&model, Detector::Atd, &data, &Attack::transfer(&model, Detector::Msp, "x".into(), 8.0 / 255.0), &device);
    evaluate(&model, Detector::Atd, &data, &Attack::transfer(&other, Detector::Msp, "x".into(), 8.0 / 255.0), &device);
    assert_eq!((entries(&cache), cache.hits.get()), (7, 1));
    let _ = std::fs::remove_dir_all(&dir);
}
