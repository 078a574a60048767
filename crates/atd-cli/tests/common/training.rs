//! Helpers of the `atd train`, `eval`, `check` and `report` tests: running the binary on the
//! fixtures, reading run folders, killing runs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atd_train::eval::EvalCache;
use serde_json::Value;

use super::*;

pub fn temp(name: &str) -> PathBuf {
    scratch(&format!("atd-train-{name}"))
}

pub fn run(args: &[&str]) -> String {
    let (ok, out, err) = atd(args);
    assert!(ok, "atd {args:?} failed:\n{err}");
    out + &err
}

/// The per-epoch log without its timing fields.
pub fn log_without_timing(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let m = v.as_object_mut().unwrap();
            m.remove("epoch_seconds");
            m.remove("images_per_second");
            m.remove("train_cores");
            m.remove("rss_mib");
            v
        })
        .collect()
}

pub fn losses(out: &Path) -> Vec<f64> {
    log_without_timing(out).iter().map(|l| l["loss"].as_f64().unwrap()).collect()
}

pub fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let w = atd_core::Weights::from_bytes(&std::fs::read(path).unwrap()).unwrap();
    w.tensors.into_iter().map(|(k, t)| (k, t.data)).collect()
}

pub fn extractor_args<'a>(data: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "extractor",
        "--arch",
        "tiny",
        "--data-dir",
        data,
        "--train-set",
        "cifar10-tiny.bin",
        "--val-size",
        "40",
        "--val-attack-size",
        "8",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--epochs",
        epochs,
        "--out",
        out,
    ]
}

/// A tiny standard extractor trained once and shared by the tests below.
pub fn standard_extractor() -> &'static PathBuf {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let data = fixture_dir();
        let out = temp("standard");
        run(&extractor_args(data.to_str().unwrap(), out.to_str().unwrap(), "4"));
        out
    })
}

/// After a SIGKILL at any moment, what the run folder holds is whole: every log line parses,
/// best.safetensors is a valid weights file, the checkpoint (when there is one) has its state.
pub fn assert_nothing_half_written(out: &Path, when: &str) {
    if let Ok(text) = std::fs::read_to_string(out.join("log.jsonl")) {
        for line in text.lines() {
            assert!(serde_json::from_str::<Value>(line).is_ok(), "{when}: a torn log line {line:?}");
        }
    }
    if let Ok(bytes) = std::fs::read(out.join("best.safetensors")) {
        assert!(atd_core::Weights::from_bytes(&bytes).is_ok(), "{when}: best.safetensors is broken");
    }
    let checkpoint = out.join("checkpoint");
    if checkpoint.exists() {
        let state = std::fs::read_to_string(checkpoint.join("state.json")).unwrap();
        assert!(serde_json::from_str::<Value>(&state).is_ok(), "{when}: checkpoint state {state:?}");
        assert!(checkpoint.join("net.bpk").exists(), "{when}: the checkpoint lacks its network");
    }
}

/// Run `args` (a command that resumes: `train ... --resume`, or `report` with its cache),
/// killing it with SIGKILL after each delay (a seeded spread over the run's length), then let
/// it finish; `whole` checks `out` after every kill.
pub fn run_with_kills(args: &[&str], out: &Path, whole: fn(&Path, &str), seed: u64, kills: usize, spread_ms: u64) {
    let mut rng = atd_train::rng::Rng::new(seed);
    for k in 0..kills {
        let ms = 50 + rng.next_u64() % spread_ms;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atd"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        whole(out, &format!("kill {k} after {ms} ms"));
    }
    run(args);
    whole(out, "after the last resume");
    let leftovers: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial") || n.contains(".old") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

pub fn atd_args<'a>(data: &'a str, extractor: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "atd",
        "--extractor",
        extractor,
        "--data-dir",
        data,
        "--train-set",
        "cifar10-tiny.bin",
        "--outliers",
        "ood-tiny.bin",
        "--val-size",
        "40",
        "--val-ood-size",
        "40",
        "--val-attack-size",
        "8",
        "--batch-size",
        "32",
        "--attack-steps",
        "2",
        "--lr",
        "2e-3",
        "--epochs",
        epochs,
        "--out",
        out,
    ]
}

pub fn tiny_eval_data<'a>(data: &'a str, limit: &'a str) -> [&'a str; 10] {
    ["--data-dir", data, "--in", "cifar10-tiny.bin", "--out", "ood-tiny.bin", "--limit", limit, "--out-limit", limit]
}

pub fn check_args<'a>(data: &'a str, weights: &'a str) -> Vec<&'a str> {
    let mut args = vec!["check", weights, "--detector", "msp", "--steps", "4"];
    args.extend(tiny_eval_data(data, "40"));
    args
}

/// `v` without its timing fields (every "seconds"), at any depth.
pub fn strip_seconds(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("seconds");
            m.values_mut().for_each(strip_seconds);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_seconds),
        _ => {}
    }
}

/// Every file of a report cache reads back whole (a kill never leaves a torn one).
pub fn cache_entries_whole(cache: &Path, when: &str) {
    if let Err(e) = EvalCache::new(cache.to_path_buf()).entries() {
        panic!("{when}: torn cache file: {e:#}");
    }
}

/// Runs `atd train` with extra arguments into a folder: (success, stdout, stderr).
pub type TrainWith<'a> = &'a dyn Fn(&Path, &[&str]) -> (bool, String, String);

/// Train into `resumed` with `args`, stopped after one epoch and resumed, and compare its log and
/// exported `file` with the uninterrupted run in `straight`.
pub fn assert_stopped_and_resumed_run_matches(
    train_with: TrainWith,
    args: &[&str],
    resumed: &Path,
    straight: &Path,
    file: &str,
) {
    for extra in [&["--stop-after", "1"][..], &["--resume"]] {
        let (ok, _, err) = train_with(resumed, &[args, extra].concat());
        assert!(ok, "{err}");
    }
    assert_eq!(log_without_timing(resumed), log_without_timing(straight));
    assert_eq!(tensors(&resumed.join(file)), tensors(&straight.join(file)));
}
