//! The `atd` binary end to end: `info` and `score` on a weights file exported by the crate.

mod common;

use std::path::Path;

use atd_core::card::ExtractorSpec;
use atd_train::Detector;
use common::*;

fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x as u8).wrapping_mul(seed), (y as u8).wrapping_add(seed), seed])
    });
    img.save(path).unwrap();
}

#[test]
fn info_and_score_on_an_exported_file() {
    let dir = scratch("atd-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let mut model = random_model(full_card(ExtractorSpec::tiny(), 3), 2);
    model.card.thresholds.insert("atd".into(), 0.5);
    model.card.training = serde_json::json!({"method": "test fixture", "seed": 2});
    let weights = dir.join("m.safetensors");
    model.save(&weights).unwrap();

    let (ok, out, err) = atd(&["info", weights.to_str().unwrap()]);
    assert!(ok, "{err}");
    for needle in [
        "widths [4, 8]",
        "3 classes: class0, class1, class2",
        "threshold:     atd = 0.5",
        "test fixture",
        "openmax true",
    ] {
        assert!(out.contains(needle), "info output lacks {needle:?}:\n{out}");
    }
    let (ok, json, _) = atd(&["info", "--json", weights.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(atd_core::ModelCard::from_json(&json).unwrap(), model.card);
    // A reader that stops early (`| head`) ends the command quietly, without a panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atd"))
        .args(["info", "--json", weights.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (small, large) = (dir.join("small.png"), dir.join("wide.png"));
    write_png(&small, 32, 32, 3);
    write_png(&large, 640, 90, 7);
    let (ok, out, err) = atd(&["score", weights.to_str().unwrap(), small.to_str().unwrap(), large.to_str().unwrap()]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "image\tatd\tmsp\tmd\trmd\topenmax\tclass");
    // The printed scores equal the library's scores on the same preprocessed inputs.
    let inputs: Vec<Vec<f32>> = [&small, &large]
        .iter()
        .map(|p| atd_core::preprocess::image_to_input(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    let x = atd_train::batches::inputs_tensor(&inputs, &device());
    let valid = model.valid();
    for (i, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        for (col, d) in Detector::ALL.into_iter().enumerate() {
            let printed: f32 = fields[col + 1].split(' ').next().unwrap().parse().unwrap();
            let expected = scores(&valid, d, &x)[i];
            assert!(
                (printed - expected).abs() <= 5e-5 * expected.abs().max(1.0),
                "{d:?} image {i}: {printed} vs {expected}"
            );
        }
        let atd_score: f32 = fields[1].split(' ').next().unwrap().parse().unwrap();
        assert!(fields[1].ends_with(if atd_score >= 0.5 { "(in)" } else { "(OUT)" }), "{line}");
    }

    // Bad inputs: a text file as image, a truncated weights file.
    let text = dir.join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    let (ok, _, err) = atd(&["score", weights.to_str().unwrap(), text.to_str().unwrap()]);
    assert!(!ok && err.contains("notes.png") && err.contains("not a supported image"), "{err}");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 10]).unwrap();
    let (ok, _, err) = atd(&["info", weights.to_str().unwrap()]);
    assert!(!ok && err.contains("m.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

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
    }
}

#[test]
fn bench_prints_one_throughput_line_per_step_kind() {
    let (ok, out, err) = atd(&["bench", "--arch", "tiny", "--batch", "4", "--iterations", "2"]);
    assert!(ok, "{err}");
    let rates: Vec<f64> =
        out.lines().map(|l| l.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(rates.len(), 3, "{out}");
    assert!(out.starts_with("train step:") && out.contains("pgd step:") && out.contains("forward:"), "{out}");
    assert!(rates.iter().all(|r| r.is_finite() && *r > 0.0), "{out}");
    // --json: one object with the same three rates, for pkg-scripts/bench-peers.sh.
    let (ok, out, err) = atd(&["bench", "--arch", "tiny", "--batch", "4", "--iterations", "2", "--json"]);
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((line["arch"].as_str(), line["batch"].as_u64()), (Some("tiny"), Some(4)), "{out}");
    for key in ["train", "pgd", "forward"] {
        assert!(line[key].as_f64().is_some_and(|r| r.is_finite() && r > 0.0), "{key}: {out}");
    }
    let (ok, _, err) = atd(&["bench", "--arch", "tiny", "--batch", "0"]);
    assert!(!ok && err.contains("--batch"), "{err}");
}

#[test]
fn digest_prints_the_content_digest_of_each_file() {
    let dir = scratch("atd-cli-digest");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    random_model(full_card(ExtractorSpec::tiny(), 3), 2).save(&a).unwrap();
    random_model(full_card(ExtractorSpec::tiny(), 3), 3).save(&b).unwrap();
    let (ok, out, err) = atd(&["digest", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let expected = atd_core::digest::weights_digest(&std::fs::read(&a).unwrap()).unwrap();
    assert_eq!(lines[0], format!("{expected}  {}", a.display()));
    assert_ne!(
        lines[0].split_whitespace().next(),
        lines[1].split_whitespace().next(),
        "different weights, same digest"
    );
    let (ok, _, err) = atd(&["digest", dir.join("missing.safetensors").to_str().unwrap()]);
    assert!(!ok && err.contains("missing.safetensors"), "{err}");
}

/// The held-out check set (`tests/check-images`, made by `pkg-scripts/make-check-images.sh`):
/// text, digits, drawings, textures, microscope and sky images, far from CIFAR-10 and from every
/// training outlier. The shipped ATD must call most of them OUT; docs/training.md gives the count.
#[test]
fn the_shipped_atd_scores_most_check_images_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut images: Vec<String> = std::fs::read_dir(root.join("tests/check-images"))
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .filter(|p| p.ends_with(".png"))
        .collect();
    images.sort();
    assert!(images.len() >= 30, "the check set has {} images", images.len());
    let weights = root.join("web/models/atd.safetensors");
    let mut args = vec!["score", weights.to_str().unwrap()];
    args.extend(images.iter().map(String::as_str));
    let (ok, out, err) = atd(&args);
    assert!(ok, "{err}");
    // After the header, one line per image: its path, then the ATD score and its verdict.
    let verdicts: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split('\t').nth(1)).collect();
    assert_eq!(verdicts.len(), images.len(), "{out}");
    let out_count = verdicts.iter().filter(|v| v.ends_with("(OUT)")).count();
    assert!(out_count * 4 >= images.len() * 3, "only {out_count} of {} check images scored OUT:\n{out}", images.len());
}
