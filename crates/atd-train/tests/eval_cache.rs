//! The evaluation cache `atd report` resumes from: an entry is found again exactly when the
//! evaluated weights, the attacking model, the attack and the images are the same.

mod common;

use atd_core::attack::Setting;
use atd_core::card::ExtractorSpec;
use atd_core::data::ImageSet;
use atd_core::digest::Digest;
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

    // One entry per set: the in-distribution set and the OOD set.
    let first = evaluate(&model, Detector::Msp, &data, &pgd, &device);
    assert_eq!((cache.entries().unwrap(), cache.hits.get()), (2, 0));
    // The same weights loaded again (another Model value): read back, same numbers.
    let reloaded = Model::from_bytes(&model.to_bytes().unwrap(), &device).unwrap().valid();
    let again = evaluate(&reloaded, Detector::Msp, &data, &pgd, &device);
    assert_eq!((cache.entries().unwrap(), cache.hits.get()), (2, 2));
    assert_eq!(Setting::ALL.map(|s| again.auroc(s)), Setting::ALL.map(|s| first.auroc(s)));

    // Other weights, another detector, another attack budget: each two new entries.
    evaluate(&other, Detector::Msp, &data, &pgd, &device);
    evaluate(&model, Detector::Atd, &data, &pgd, &device);
    evaluate(&model, Detector::Msp, &data, &Attack::new(AttackKind::Pgd, PgdConfig::new(4.0 / 255.0, 2)), &device);
    assert_eq!((cache.entries().unwrap(), cache.hits.get()), (8, 2));
    // A changed pixel of the in-distribution set: that set is recomputed, the OOD set read back.
    let mut changed = in_set.clone();
    changed.pixels[0] = changed.pixels[0].wrapping_add(1);
    evaluate(&model, Detector::Msp, &EvalData { in_set: &changed, ..data }, &pgd, &device);
    assert_eq!((cache.entries().unwrap(), cache.hits.get()), (9, 3));
    // Another OOD set added (as when an interrupted evaluation resumes): only it is computed,
    // and the set evaluated alone scores exactly as within the whole evaluation.
    let more_sets = vec![out_sets[0].clone(), ("shapes".to_string(), image_set(5, 5))];
    let more = evaluate(&model, Detector::Msp, &EvalData { out_sets: &more_sets, ..data }, &pgd, &device);
    assert_eq!((cache.entries().unwrap(), cache.hits.get()), (10, 5));
    let fresh = EvalCache::new(scratch("atd-eval-cache-fresh"));
    let shapes_alone = EvalData { out_sets: &more_sets[1..], cache: Some(&fresh), ..data };
    let alone = evaluate(&model, Detector::Msp, &shapes_alone, &pgd, &device);
    assert_eq!(more.scores.1[1].attacked, alone.scores.1[0].attacked);
    assert_eq!(more.scores.0.attacked, first.scores.0.attacked);
    let _ = std::fs::remove_dir_all(&fresh.dir);

    // A transfer attack is keyed by the model it is crafted on, not only by its name.
    evaluate(&model, Detector::Atd, &data, &Attack::transfer(&model, Detector::Msp, "x".into(), 8.0 / 255.0), &device);
    evaluate(&model, Detector::Atd, &data, &Attack::transfer(&other, Detector::Msp, "x".into(), 8.0 / 255.0), &device);
    assert_eq!((cache.entries().unwrap(), cache.hits.get()), (14, 5));
    // All of it in one compressed file per evaluated model (transfer attacks included), named
    // by the digest of the model's weights.
    let file_of = |m: &Model| dir.join(format!("{}.json.gz", &Digest::new().part(m.to_bytes().unwrap()).hex()[..32]));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    assert!(file_of(&model).exists() && file_of(&other).exists());

    // A damaged file costs only its model's entries: a new run recomputes those (and writes
    // them back) and reads the other model's.
    std::fs::write(file_of(&other), b"not gzip").unwrap();
    let rerun = EvalCache::new(dir.clone());
    let data = EvalData { cache: Some(&rerun), ..data };
    evaluate(&other, Detector::Msp, &data, &pgd, &device);
    assert_eq!(rerun.hits.get(), 0);
    evaluate(&model, Detector::Msp, &data, &pgd, &device);
    assert_eq!((rerun.entries().unwrap(), rerun.hits.get()), (14, 2));
    let _ = std::fs::remove_dir_all(&dir);
}
