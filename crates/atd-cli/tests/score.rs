//! `atd info` and `atd score` on an exported file, and the shipped ATD on the held-out check
//! images.

mod common;

use std::path::Path;

use atd_core::card::ExtractorSpec;
use common::*;

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
        for (col, d) in valid.detectors().into_iter().enumerate() {
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
