//! `atd attack` on every engine.

mod common;

use atd_core::card::ExtractorSpec;
use common::*;

#[test]
fn attack_writes_an_adversarial_png_inside_the_eps_ball_on_every_engine() {
    let dir = scratch("atd-cli-attack");
    std::fs::create_dir_all(&dir).unwrap();
    let mut model = random_model(full_card(ExtractorSpec::tiny(), 3), 5);
    model.card.thresholds.insert("atd".into(), 0.5);
    let weights = dir.join("m.safetensors");
    model.save(&weights).unwrap();
    let image = dir.join("in.png");
    write_png(&image, 64, 48, 7);
    // What the model sees: the image reduced to 32x32 bytes.
    let clean = atd_core::preprocess::input_to_rgb8(
        &atd_core::preprocess::image_to_input(&std::fs::read(&image).unwrap()).unwrap(),
    );
    for engine in ["gpu", "cpu", "burn"] {
        let out = dir.join(format!("adv-{engine}.png"));
        let (ok, text, err) = atd(&[
            "attack",
            "--engine",
            engine,
            weights.to_str().unwrap(),
            image.to_str().unwrap(),
            "--steps",
            "5",
            "--eps",
            "4/255",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{engine}: {err}");
        assert!(text.contains("score:") && text.contains("L-inf:"), "{engine}: {text}");
        let adv = image::open(&out).unwrap().to_rgb8();
        assert_eq!(adv.dimensions(), (32, 32));
        let linf = adv.as_raw().iter().zip(&clean).map(|(a, c)| (*a as i32 - *c as i32).abs()).max().unwrap();
        assert!(linf <= 4 && linf > 0, "{engine}: L-inf {linf}/255 for eps 4/255");
        // A detector the file does not hold: a clear error on every engine, not a panic.
        let (ok, _, err) = atd(&[
            "attack",
            "--engine",
            engine,
            "--detector",
            "outlier-class",
            weights.to_str().unwrap(),
            image.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!ok && !err.contains("panicked") && err.contains("outlier"), "{engine}: {err}");
    }
}
