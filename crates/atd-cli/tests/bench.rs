//! `atd bench`.

mod common;

use common::*;

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
