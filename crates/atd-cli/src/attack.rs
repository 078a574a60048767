//! `atd attack`: one image attacked end to end on a detector's score, on the WGSL engine (GPU
//! or its CPU reference) or on Burn, written as PNG.

use std::path::{Path, PathBuf};

use anyhow::Context;
use atd_train::{Backend, Detector, Model, batches, model::to_vec, progress};
use burn::tensor::Device;

use crate::args::PgdArgs;

/// `atd attack`'s arguments.
#[derive(clap::Args)]
pub struct AttackArgs {
    pub weights: PathBuf,
    pub image: PathBuf,
    /// gpu: our WGSL engine; cpu: the same kernels on the CPU; burn: the Burn reference.
    #[arg(long, value_enum, default_value = "gpu")]
    pub engine: AttackEngine,
    /// The detector to attack: atd (discriminator) or msp (classifier head); the WGSL
    /// engines compute these two.
    #[arg(long, value_enum, default_value = "atd")]
    pub detector: Detector,
    /// in: make it look in-distribution; out: make it look OOD; auto: the opposite of the
    /// clean verdict (needs the card's threshold; otherwise out).
    #[arg(long, value_enum, default_value = "auto")]
    pub direction: AttackDirection,
    #[command(flatten)]
    pub pgd: PgdArgs,
    /// The adversarial image (PNG, 32x32).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the perturbation, amplified to the full range (PNG).
    #[arg(long)]
    pub perturbation: Option<PathBuf>,
}

pub fn run(args: AttackArgs) -> anyhow::Result<()> {
    let AttackArgs { weights, image, engine, detector, direction, pgd, out, perturbation } = args;
    attack(&weights, &image, &AttackChoice { engine, detector, direction }, &pgd, &out, perturbation.as_deref())
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum AttackEngine {
    Gpu,
    Cpu,
    Burn,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum AttackDirection {
    Auto,
    In,
    Out,
}

struct AttackChoice {
    engine: AttackEngine,
    detector: Detector,
    direction: AttackDirection,
}

fn write_png(path: &Path, chw: &[u8]) -> anyhow::Result<()> {
    let png = atd_core::preprocess::chw_bytes_to_png(chw)?;
    std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
}

fn attack(
    weights: &Path,
    image: &Path,
    a: &AttackChoice,
    pgd: &PgdArgs,
    out: &Path,
    perturbation: Option<&Path>,
) -> anyhow::Result<()> {
    use atd_core::attack::{Direction, linf_levels, perturbation_map};
    use atd_gpu::{AttackOptions, Engine};
    let bytes =
        atd_core::weights::read_weights_file(weights).with_context(|| format!("reading {}", weights.display()))?;
    let file = atd_core::preprocess::read_image_file(image).with_context(|| format!("reading {}", image.display()))?;
    // The model sees the 32x32 image as 8-bit values, exactly what a PNG can hold.
    let clean_bytes = atd_core::preprocess::input_to_chw_bytes(
        &atd_core::preprocess::image_to_input(&file).with_context(|| format!("image {}", image.display()))?,
    );
    let clean = atd_core::preprocess::chw_bytes_to_input(&clean_bytes);
    let (detector, name) = (a.detector, a.detector.name());
    let mut engine = match a.engine {
        AttackEngine::Gpu => Some(pollster::block_on(Engine::gpu(&bytes, detector, 1))?),
        AttackEngine::Cpu => Some(Engine::cpu(&bytes, detector, 1)?),
        AttackEngine::Burn => None,
    };
    let burn_model = match engine {
        None => {
            let model = Model::from_bytes(&bytes, &Backend::Cpu.device()?)?.valid();
            crate::args::pick_detector(&model, Some(detector))?;
            Some(model)
        }
        Some(_) => None,
    };
    let score_of = |engine: &mut Option<Engine>, x: &[f32]| -> anyhow::Result<f32> {
        Ok(match engine {
            Some(e) => pollster::block_on(e.score(x))?[0],
            None => to_vec(
                burn_model.as_ref().unwrap().score(detector, batches::inputs_tensor(&[x.to_vec()], &Device::flex())),
            )[0],
        })
    };
    let clean_score = score_of(&mut engine, &clean)?;
    let card = atd_core::weights::read_card(&bytes)?;
    let threshold = card.thresholds.get(name).copied();
    let direction = match (a.direction, threshold) {
        (AttackDirection::In, _) => Direction::In,
        (AttackDirection::Out, _) => Direction::Out,
        (AttackDirection::Auto, Some(t)) if clean_score < t => Direction::In,
        (AttackDirection::Auto, _) => Direction::Out,
    };
    let options = AttackOptions::new(pgd.spec(), direction);
    let bar = progress::bar(((pgd.steps + 1) * pgd.restarts) as u64, "attacking");
    let started = std::time::Instant::now();
    let adversarial = match &mut engine {
        Some(e) => {
            let result = pollster::block_on(e.attack(&clean, &options, |_, s| {
                bar.set_message(format!("attacking: score {:.4}", s[0]));
                bar.inc(1);
                true
            }))?;
            result.adversarial
        }
        None => {
            let model = burn_model.as_ref().unwrap();
            let sign = direction.sign();
            let objective = |x: burn::tensor::Tensor<4>| model.score_logit(detector, x) * sign;
            // The best point of the attack, as the WGSL engine returns it.
            let cfg = atd_train::PgdConfig { best_of_steps: true, ..pgd.spec().into() };
            let x = batches::inputs_tensor(std::slice::from_ref(&clean), &Device::flex());
            to_vec(atd_train::pgd(&objective, &x, &cfg, |_, _| bar.inc(1)).adversarial)
        }
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let adv_bytes = atd_core::preprocess::quantize_towards_clean(&clean_bytes, &adversarial);
    let adv_score = score_of(&mut engine, &atd_core::preprocess::chw_bytes_to_input(&adv_bytes))?;
    write_png(out, &adv_bytes)?;
    let linf = linf_levels(&clean_bytes, &adv_bytes);
    if let Some(path) = perturbation {
        write_png(path, &perturbation_map(&clean_bytes, &adv_bytes, pgd.eps))?;
    }
    let verdict = |s: f32| match threshold {
        Some(t) if s >= t => " (in)",
        Some(_) => " (OUT)",
        None => "",
    };
    let engine_name = match (&engine, a.engine) {
        (Some(e), AttackEngine::Gpu) => format!("WGSL on {}", e.adapter().map(|x| x.name.clone()).unwrap_or_default()),
        (Some(_), _) => "WGSL kernels on the CPU".to_string(),
        (None, _) => "Burn (flex CPU)".to_string(),
    };
    println!("detector:   {name} (threshold {})", threshold.map(|t| format!("{t:.4}")).unwrap_or("none".into()));
    println!(
        "attack:     PGD-{} towards {direction:?}, eps {:.5}, {} restart(s), best point kept, {engine_name}, {:.1} ms/step",
        pgd.steps,
        pgd.eps,
        pgd.restarts,
        1000.0 * seconds / ((pgd.steps + 1) * pgd.restarts) as f64
    );
    println!("score:      {clean_score:.4}{} -> {adv_score:.4}{}", verdict(clean_score), verdict(adv_score));
    println!("L-inf:      {linf}/255 (eps {:.2}/255)", pgd.eps * 255.0);
    println!("wrote:      {}", out.display());
    Ok(())
}
