//! The `atd` command line: training, evaluation, reports and attacks over the Burn models
//! (atd-train) and the WGSL engine (atd-gpu). One module per command; this file is the command
//! tree and the dispatch.

mod args;
mod attack;
mod bench;
mod check;
mod digest;
mod eval;
mod figures;
mod info;
mod report;
mod score;
mod toy;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "atd", version, about = "Adversarially trained discriminators for robust OOD detection")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model card of a weights file (architecture, classes, thresholds, recipe, metrics).
    Info(info::InfoArgs),
    /// Score images of any size and format with every detector the weights file holds.
    Score(score::ScoreArgs),
    /// Attack one image end to end on a detector's score and write the adversarial PNG.
    Attack(attack::AttackArgs),
    /// A detector under end-to-end attacks in the four settings Clean / In / Out / In-and-Out.
    Eval(eval::EvalArgs),
    /// Attack-strength sanity checks on a detector, printed as PASS/FAIL with their numbers;
    /// exits with an error when one fails.
    Check(check::CheckArgs),
    /// Evaluate every shipped model and write docs/results.md with tables and figures.
    Report(report::ReportArgs),
    /// The paper's 2-D example (Fig. 4): one decision-map PNG per training setting, and the
    /// margin around the closed and open sets.
    Toy(toy::ToyArgs),
    /// Content digests of weight files (SHA-256 of the canonical bytes: equal for the same
    /// tensors and card however the file's header is ordered), one "digest  path" line each.
    Digest(digest::DigestArgs),
    /// Training and PGD throughput of an architecture on random images (images/s, one line each).
    Bench(bench::BenchArgs),
    /// Train a model (progress bar, per-epoch checkpoint, `--resume`, JSON-lines log).
    Train {
        #[command(subcommand)]
        what: train::TrainCommand,
    },
}

/// Burn allocates and frees activation-sized buffers (megabytes each) at every step. glibc hands
/// those back to the kernel and faults them in again, which cost ~6-8% of the wall time of a
/// CPU training or attack run here (measured: HAT training, `atd eval`); keep them in the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only tunes the allocator; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Rust ignores SIGPIPE, so `atd info --json | head` would panic on the closed pipe; end
/// quietly instead, as command-line tools do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn quiet_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn quiet_on_closed_pipe() {}

fn main() {
    keep_freed_memory();
    quiet_on_closed_pipe();
    let result = match Cli::parse().command {
        Command::Info(args) => info::run(args),
        Command::Score(args) => score::run(args),
        Command::Attack(args) => attack::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Check(args) => check::run(args),
        Command::Report(args) => report::run(args),
        Command::Toy(args) => toy::run(args),
        Command::Digest(args) => digest::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Train { what } => train::run(what),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
