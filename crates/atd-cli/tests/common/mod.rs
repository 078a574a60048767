//! Helpers for the `atd` binary's tests: atd-train's test helpers (models, fixtures) and a
//! runner for the binary.
#![allow(dead_code)]

#[path = "../../../atd-train/tests/common/mod.rs"]
mod models;

pub use models::*;

/// Run the `atd` binary: (success, stdout, stderr).
pub fn atd(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atd")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
