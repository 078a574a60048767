//! `atd train` (both commands) killed with SIGKILL at random moments resumes to the same bits.

mod common;

use common::*;

#[test]
fn training_killed_at_random_moments_resumes_to_the_same_bits() {
    let data = fixture_dir();
    let data = data.to_str().unwrap();
    let straight = standard_extractor();
    let out = temp("killed-extractor");
    let mut args = extractor_args(data, out.to_str().unwrap(), "4");
    args.push("--resume");
    // The whole run takes ~0.7 s here (ATD's ~1.8 s): kills land in loading, epochs and
    // checkpoint writes, and each resume gets a little further.
    run_with_kills(&args, &out, assert_nothing_half_written, 17, 12, 600);
    assert_eq!(log_without_timing(&out), log_without_timing(straight));
    assert_eq!(tensors(&out.join("extractor.safetensors")), tensors(&straight.join("extractor.safetensors")));

    let extractor = straight.join("extractor.safetensors");
    let (plain, killed) = (temp("atd-unkilled"), temp("atd-killed"));
    run(&atd_args(data, extractor.to_str().unwrap(), plain.to_str().unwrap(), "3"));
    let mut args = atd_args(data, extractor.to_str().unwrap(), killed.to_str().unwrap(), "3");
    args.push("--resume");
    run_with_kills(&args, &killed, assert_nothing_half_written, 29, 12, 1500);
    assert_eq!(log_without_timing(&killed), log_without_timing(&plain));
    assert_eq!(tensors(&killed.join("atd.safetensors")), tensors(&plain.join("atd.safetensors")));
}
