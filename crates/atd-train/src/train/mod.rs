//! The training driver shared by every `atd train` command: epochs of batches with a progress
//! bar (loss, accuracy, images/s, ETA), validation and model selection after each epoch, a
//! JSON-lines log, a checkpoint per epoch (weights, optimizer state, progress) and exact
//! resumption after an interruption.
//!
//! One file past the usual length: the loop, the checkpoint it writes and the resume that reads it
//! back are one contract (what is saved is exactly what is restored); split, a change to one side
//! could miss the other.

pub mod atd;
pub mod extractor;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::AtdNet;

/// Parse an epsilon or step size written as a fraction (`8/255`) or a decimal (`0.0313`).
pub fn parse_fraction(text: &str) -> Result<f32, String> {
    let value = match text.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f32, f32) = (
                a.trim().parse().map_err(|e| format!("{text}: {e}"))?,
                b.trim().parse().map_err(|e| format!("{text}: {e}"))?,
            );
            if b == 0.0 {
                return Err(format!("{text}: division by zero"));
            }
            a / b
        }
        None => text.trim().parse().map_err(|e| format!("{text}: {e}"))?,
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{text} is outside [0, 1] (images are in [0, 1])"));
    }
    Ok(value)
}

/// Parse the decay of a weight average (`--ema`): a number in [0, 1).
pub fn parse_decay(text: &str) -> Result<f64, String> {
    let decay: f64 = text.parse().map_err(|e| format!("{text}: {e}"))?;
    if !(0.0..1.0).contains(&decay) {
        return Err(format!("{text}: a decay is in [0, 1)"));
    }
    Ok(decay)
}

/// Learning-rate schedule over the whole run, as a function of progress in [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// PyTorch's OneCycleLR as HAT uses it: cosine warm-up from max/25 over the first 25%, then
    /// cosine annealing to max/25e4.
    OneCycle,
    /// Cosine annealing from max to 0.
    Cosine,
    Constant,
}

impl Schedule {
    pub fn lr(self, max: f64, progress: f64) -> f64 {
        let cos_between = |from: f64, to: f64, t: f64| {
            to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos())
        };
        match self {
            Schedule::OneCycle => {
                let (start, end, warm) = (max / 25.0, max / 25.0 / 1e4, 0.25);
                if progress < warm {
                    cos_between(start, max, progress / warm)
                } else {
                    cos_between(max, end, (progress - warm) / (1.0 - warm))
                }
            }
            Schedule::Cosine => cos_between(max, 0.0, progress),
            Schedule::Constant => max,
        }
    }
}

/// What one optimisation step reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub loss: f64,
    /// Fraction of correct predictions, when the step classifies.
    pub accuracy: Option<f64>,
    pub images: usize,
}

/// A model being trained, as the driver sees it.
pub trait Training {
    fn batches_per_epoch(&self) -> usize;
    /// One optimisation step on batch `batch` of `epoch`; `progress` in [0, 1) is the position
    /// in the whole run (for the learning-rate schedule).
    fn step(&mut self, epoch: usize, batch: usize, progress: f64) -> anyhow::Result<StepStats>;
    /// Validation after an epoch: metrics to log, and the model-selection score (higher wins).
    fn validate(&mut self, epoch: usize) -> anyhow::Result<(serde_json::Map<String, Value>, f64)>;
    /// The trained network and its optimizers, by name, for checkpoints.
    fn net(&self) -> &AtdNet;
    fn set_net(&mut self, net: AtdNet);
    /// The weight average the recipe keeps beside the trained network, if it keeps one
    /// (checkpointed with it).
    fn average(&self) -> Option<&AtdNet> {
        None
    }
    fn set_average(&mut self, _net: AtdNet) {}
    fn optimizers(&mut self) -> Vec<(&'static str, &mut ModuleOptimizer)>;
    /// Export the current model as a weights file with these validation metrics in its card.
    fn save_weights(&self, path: &Path, metrics: &Value) -> anyhow::Result<()>;
    /// After training: the final weights file from the best checkpoint (baselines fitted,
    /// thresholds set).
    fn export(&self, best: &Path, out: &Path) -> anyhow::Result<crate::Model>;
}

/// Train `task` (resuming when asked) and, once every epoch is done, export the best epoch as
/// `<out>/<file_name>`.
pub fn train_and_export(
    task: &mut impl Training,
    opts: &RunOptions,
    recipe: &Value,
    file_name: &str,
) -> anyhow::Result<()> {
    let summary = run(task, opts, recipe)?;
    if !summary.finished {
        return Ok(());
    }
    let out = opts.out.join(file_name);
    let model = task.export(&best_weights_path(&opts.out), &out)?;
    // A resumed run that was already complete trains nothing: no throughput to report.
    let throughput = if summary.images_per_second > 0.0 {
        format!("; {:.0} images/s over this run", summary.images_per_second)
    } else {
        String::new()
    };
    eprintln!(
        "wrote {} (best epoch {}, selection score {:.4}); thresholds {:?}{throughput}",
        out.display(),
        summary.best_metrics["epoch"],
        summary.best_score,
        model.card.thresholds,
    );
    Ok(())
}

/// Where a run writes: `log.jsonl`, `checkpoint/`, `best.safetensors`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub epochs: usize,
    pub resume: bool,
    /// Stop (cleanly, resumable) after this many epochs of this invocation.
    pub stop_after: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Epochs completed in total (including those before a resume).
    pub epochs_done: usize,
    pub finished: bool,
    pub best_score: f64,
    pub best_metrics: Value,
    pub wall_seconds: f64,
    pub images_per_second: f64,
}

pub fn best_weights_path(out: &Path) -> PathBuf {
    out.join("best.safetensors")
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Write a file whole or not at all: to a sibling, then renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Write a checkpoint next to the old one, then swap, so a kill never leaves a broken one. A
/// checkpoint folder is complete once its state.json exists (written last, atomically).
fn save_checkpoint(out: &Path, task: &mut impl Training, state: &Value) -> anyhow::Result<()> {
    let dir = checkpoint_dir(out);
    let (tmp, old) = (out.join("checkpoint.partial"), out.join("checkpoint.old"));
    for stale in [&tmp, &old] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    std::fs::create_dir_all(&tmp)?;
    task.net()
        .clone()
        .into_record()
        .save(tmp.join("net.bpk"))
        .map_err(|e| anyhow::anyhow!("saving the network: {e:?}"))?;
    if let Some(average) = task.average() {
        average
            .clone()
            .into_record()
            .save(tmp.join("average.bpk"))
            .map_err(|e| anyhow::anyhow!("saving the weight average: {e:?}"))?;
    }
    for (name, optim) in task.optimizers() {
        optim
            .save(tmp.join(format!("optim-{name}.bpk")))
            .map_err(|e| anyhow::anyhow!("saving optimizer {name}: {e:?}"))?;
    }
    write_atomically(&tmp.join("state.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
    if dir.exists() {
        std::fs::rename(&dir, &old)?;
    }
    std::fs::rename(&tmp, &dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// After a kill inside `save_checkpoint`, put the newest complete checkpoint back in place and
/// drop what was half-written.
fn recover_checkpoint(out: &Path) -> anyhow::Result<()> {
    let dir = checkpoint_dir(out);
    let (partial, old) = (out.join("checkpoint.partial"), out.join("checkpoint.old"));
    if !dir.exists() {
        for candidate in [&partial, &old] {
            if candidate.join("state.json").exists() {
                std::fs::rename(candidate, &dir)?;
                break;
            }
        }
    }
    for stale in [&partial, &old] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    let best_partial = best_weights_path(out).with_extension("safetensors.partial");
    if best_partial.exists() {
        std::fs::remove_file(best_partial)?;
    }
    Ok(())
}

/// The log as of the checkpoint: lines of later epochs (logged just before a kill prevented
/// their checkpoint) and a torn last line are dropped.
fn truncate_log(path: &Path, epochs: usize) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let epoch_of = |line: &str| serde_json::from_str::<Value>(line).ok().and_then(|v| v["epoch"].as_u64());
    let kept: String =
        text.lines().filter(|l| epoch_of(l).is_some_and(|e| e as usize <= epochs)).map(|l| format!("{l}\n")).collect();
    if kept != text {
        write_atomically(path, kept.as_bytes())?;
    }
    Ok(())
}

fn load_checkpoint(out: &Path, task: &mut impl Training) -> anyhow::Result<Value> {
    let dir = checkpoint_dir(out);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
    let record = ModuleRecord::load(dir.join("net.bpk"))
        .map_err(|e| anyhow::anyhow!("reading the checkpointed network: {e:?}"))?;
    let net = task
        .net()
        .clone()
        .try_load_record(record)
        .map_err(|e| anyhow::anyhow!("the checkpoint does not fit this model: {e:?}"))?;
    task.set_net(net);
    if let Some(average) = task.average().cloned() {
        let record = ModuleRecord::load(dir.join("average.bpk"))
            .map_err(|e| anyhow::anyhow!("reading the checkpointed weight average: {e:?}"))?;
        let average = average
            .try_load_record(record)
            .map_err(|e| anyhow::anyhow!("the checkpointed weight average does not fit this model: {e:?}"))?;
        task.set_average(average);
    }
    for (name, optim) in task.optimizers() {
        let path = dir.join(format!("optim-{name}.bpk"));
        let fresh = std::mem::replace(optim, burn::optim::SgdConfig::new().init());
        *optim = fresh.load(&path).map_err(|e| anyhow::anyhow!("reading {}: {e:?}", path.display()))?;
    }
    Ok(state)
}

/// Extra training outliers made here, appended to the real ones (`synthetic::add_training_outliers`);
/// ATD trains on them, ATOM mines them.
#[derive(Clone, Debug, Default, clap::Args, Serialize, Deserialize)]
pub struct ExtraOutliers {
    /// Extra training outliers made here: half procedural images (noise, flat colours,
    /// gradients, stripes, shapes, strokes, glyph rows, blurry textures), half recoloured copies
    /// of the training outliers (grayscale, swapped channels, negatives). 0: the paper's recipe.
    #[arg(long, default_value_t = 0)]
    #[serde(default, skip_serializing_if = "is_zero")]
    pub synthetic_outliers: usize,
    /// Extra training outliers made from the training split's own images (jigsaw-shuffled
    /// patches and 2x2 mosaics of half-size images): CIFAR-10's colours and parts without its
    /// objects, like near-OOD images. 0: none.
    #[arg(long, default_value_t = 0)]
    #[serde(default, skip_serializing_if = "is_zero")]
    pub derived_outliers: usize,
}

impl ExtraOutliers {
    pub fn is_none(&self) -> bool {
        self.synthetic_outliers == 0 && self.derived_outliers == 0
    }
}

/// For `skip_serializing_if`: recipes leave unused counts out of their JSON, so that runs
/// recorded before a count existed still resume.
pub(crate) fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The recipe fields that may differ between a run and its resumption.
const RESUMABLE_CHANGES: [&str; 3] = ["epochs", "stop_after", "resume"];

fn same_recipe(a: &Value, b: &Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["recipe".into()] };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| !RESUMABLE_CHANGES.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| k.to_string())
        .collect()
}

/// Train `task` for the epochs `opts` asks, resuming from `opts.out` when asked.
pub fn run(task: &mut impl Training, opts: &RunOptions, recipe: &Value) -> anyhow::Result<RunSummary> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    recover_checkpoint(&opts.out)?;
    let has_checkpoint = checkpoint_dir(&opts.out).join("state.json").exists();
    let (mut epoch, mut best_score, mut best_metrics) = (0, f64::NEG_INFINITY, Value::Null);
    if has_checkpoint && !opts.resume {
        bail!(
            "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
            opts.out.display()
        );
    }
    if has_checkpoint {
        let state = load_checkpoint(&opts.out, task)?;
        let changed = same_recipe(&state["recipe"], recipe);
        if !changed.is_empty() {
            bail!("--resume with a different recipe ({}); only --epochs may change", changed.join(", "));
        }
        epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
        best_score = state["best_score"].as_f64().unwrap_or(f64::NEG_INFINITY);
        best_metrics = state["best_metrics"].clone();
        eprintln!("resuming {} after epoch {epoch}", opts.out.display());
    } else if opts.resume {
        eprintln!("no checkpoint in {}: starting from scratch", opts.out.display());
    }
    truncate_log(&opts.out.join("log.jsonl"), epoch)?;
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(opts.out.join("log.jsonl"))?;
    let per_epoch = task.batches_per_epoch();
    let total_steps = (opts.epochs * per_epoch).max(1);
    let started = Instant::now();
    let mut images_seen = 0usize;
    let mut epochs_this_run = 0;
    while epoch < opts.epochs {
        if opts.stop_after.is_some_and(|n| epochs_this_run >= n) {
            eprintln!("stopping after {epochs_this_run} epoch(s) as asked; continue with --resume");
            break;
        }
        let bar = crate::progress::bar(per_epoch as u64, &format!("epoch {}/{}", epoch + 1, opts.epochs));
        let epoch_start = Instant::now();
        let usage_start = crate::usage::Usage::now();
        let (mut loss_sum, mut acc_sum, mut acc_n, mut images) = (0.0, 0.0, 0usize, 0usize);
        for batch in 0..per_epoch {
            let stats = task.step(epoch, batch, (epoch * per_epoch + batch) as f64 / total_steps as f64)?;
            anyhow::ensure!(
                stats.loss.is_finite(),
                "the loss diverged (epoch {}, batch {batch}): lower the learning rate",
                epoch + 1
            );
            loss_sum += stats.loss;
            if let Some(a) = stats.accuracy {
                acc_sum += a;
                acc_n += 1;
            }
            images += stats.images;
            let acc = if acc_n > 0 { format!(" acc {:.1}%", 100.0 * acc_sum / acc_n as f64) } else { String::new() };
            bar.set_message(format!(
                "epoch {}/{} loss {:.4}{acc}",
                epoch + 1,
                opts.epochs,
                loss_sum / (batch + 1) as f64
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let usage_trained = crate::usage::Usage::now();
        let (mut metrics, score) = task.validate(epoch)?;
        epoch += 1;
        epochs_this_run += 1;
        images_seen += images;
        metrics.insert("epoch".into(), json!(epoch));
        metrics.insert("loss".into(), json!(loss_sum / per_epoch.max(1) as f64));
        if acc_n > 0 {
            metrics.insert("train_accuracy".into(), json!(acc_sum / acc_n as f64));
        }
        metrics.insert("images_per_second".into(), json!(images as f64 / train_seconds));
        metrics.insert("epoch_seconds".into(), json!(epoch_start.elapsed().as_secs_f64()));
        // How many cores the training steps kept busy, and the memory after validation: a leak
        // or a serial stretch shows here, epoch by epoch.
        if let (Some(before), Some(after)) = (usage_start, usage_trained) {
            metrics.insert("train_cores".into(), json!(after.cores_since(&before, train_seconds)));
        }
        if let Some(now) = crate::usage::Usage::now() {
            metrics.insert("rss_mib".into(), json!(now.rss_mib));
        }
        let line = Value::Object(metrics);
        use std::io::Write;
        // One write call per line, so a kill never leaves half a line.
        log.write_all(format!("{}\n", serde_json::to_string(&line)?).as_bytes())?;
        eprintln!("{}", serde_json::to_string(&line)?);
        if score > best_score {
            best_score = score;
            best_metrics = line.clone();
            task.save_weights(&best_weights_path(&opts.out), &best_metrics)?;
        }
        let state = json!({ "epoch": epoch, "best_score": best_score, "best_metrics": best_metrics, "recipe": recipe });
        save_checkpoint(&opts.out, task, &state)?;
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    Ok(RunSummary {
        epochs_done: epoch,
        finished: epoch >= opts.epochs,
        best_score,
        best_metrics,
        wall_seconds,
        images_per_second: images_seen as f64 / wall_seconds.max(1e-9),
    })
}

/// The SGD the extractor recipes use: momentum 0.9 without dampening, optional Nesterov,
/// L2 weight decay.
pub fn sgd(momentum: f64, nesterov: bool, weight_decay: f32) -> ModuleOptimizer {
    use burn::optim::{SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig};
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig { momentum, dampening: 0.0, nesterov }))
        .with_weight_decay((weight_decay > 0.0).then_some(WeightDecayConfig { penalty: weight_decay }))
        .init()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse_and_range_is_checked() {
        assert_eq!(parse_fraction("8/255").unwrap(), 8.0 / 255.0);
        assert_eq!(parse_fraction("0.0313").unwrap(), 0.0313);
        assert!(parse_fraction("3/0").is_err());
        assert!(parse_fraction("2").is_err());
        assert!(parse_fraction("x/255").is_err());
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("atd-recover-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn checkpoint_in(dir: &Path, epoch: u64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("state.json"), format!("{{\"epoch\": {epoch}}}")).unwrap();
    }

    #[test]
    fn a_kill_between_the_checkpoint_renames_loses_nothing() {
        // Killed after the old checkpoint moved aside, before the new one moved in: the new one.
        let out = scratch("between");
        checkpoint_in(&out.join("checkpoint.old"), 2);
        checkpoint_in(&out.join("checkpoint.partial"), 3);
        recover_checkpoint(&out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap(), "{\"epoch\": 3}");
        assert!(!out.join("checkpoint.old").exists() && !out.join("checkpoint.partial").exists());
        // Killed while the new one was still being written: the old one.
        let out = scratch("writing");
        checkpoint_in(&out.join("checkpoint.old"), 2);
        std::fs::create_dir_all(out.join("checkpoint.partial")).unwrap();
        std::fs::write(out.join("checkpoint.partial/net.bpk"), b"half").unwrap();
        std::fs::write(out.join("best.safetensors.partial"), b"half").unwrap();
        recover_checkpoint(&out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap(), "{\"epoch\": 2}");
        assert!(!out.join("checkpoint.partial").exists() && !out.join("best.safetensors.partial").exists());
    }

    #[test]
    fn the_log_is_cut_back_to_the_checkpoint() {
        let out = scratch("log");
        let log = out.join("log.jsonl");
        std::fs::write(&log, "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3}\n{\"epo").unwrap();
        truncate_log(&log, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "{\"epoch\":1}\n{\"epoch\":2}\n");
        truncate_log(&log, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    }

    #[test]
    fn one_cycle_warms_up_then_anneals() {
        let s = Schedule::OneCycle;
        assert!((s.lr(0.2, 0.0) - 0.008).abs() < 1e-12);
        assert!((s.lr(0.2, 0.25) - 0.2).abs() < 1e-12);
        assert!(s.lr(0.2, 0.1) < s.lr(0.2, 0.2));
        assert!(s.lr(0.2, 0.6) > s.lr(0.2, 0.9));
        assert!(s.lr(0.2, 1.0) < 1e-6);
        assert_eq!(Schedule::Cosine.lr(0.1, 0.5), 0.05);
    }
}
