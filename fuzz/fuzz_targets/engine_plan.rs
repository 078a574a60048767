//! The engine built from any valid-looking model card (shapes that overflow, zero widths,
//! absurd batch sizes), then the page's attack options (JSON, as the worker receives them) on
//! it: an error naming the problem, or a score and an attack that stay in the eps-ball.
//! Input: one byte picking the detector, four of batch size, then `card JSON\noptions JSON`.
#![no_main]

use atd_core::attack::Detector;
use atd_core::card::ModelCard;
use atd_core::weights::{NamedTensor, write_weights};
use atd_gpu::{AttackOptions, ConvStrategy, Engine, Plan};
use libfuzzer_sys::fuzz_target;

/// Weight values the harness itself may write: a card asking for more is skipped (the file
/// would dwarf any fuzzer input and slow every execution).
const HARNESS_FLOATS: usize = 1 << 18;
/// Plans this small also run (score and attack) within the per-input time limit.
const RUN_FLOATS: usize = 1 << 14;
const RUN_BATCH: usize = 4;

/// The weights file of `card` and its number of values, unless it is over `HARNESS_FLOATS`.
fn weights_for(card: &ModelCard) -> Option<(Vec<u8>, usize)> {
    let expected = card.expected_tensors();
    let total = expected.iter().try_fold(0usize, |sum, (_, shape)| {
        sum.checked_add(shape.iter().try_fold(1usize, |p, &d| p.checked_mul(d))?)
    })?;
    if total > HARNESS_FLOATS {
        return None;
    }
    // Small positive values: finite everywhere, BatchNorm variances included.
    let tensors = expected
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product::<usize>();
            (name, NamedTensor { shape, data: (0..n).map(|i| 0.01 + (i % 7) as f32 * 0.02).collect() })
        })
        .collect();
    Some((write_weights(card, &tensors), total))
}

fuzz_target!(|data: &[u8]| {
    let [pick, b0, b1, b2, b3, rest @ ..] = data else { return };
    let detector = Detector::ALL[*pick as usize % Detector::ALL.len()];
    let batch = u32::from_le_bytes([*b0, *b1, *b2, *b3]) as usize;
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (card_json, options_json) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(card) = ModelCard::from_json(card_json) else { return };
    let Some((bytes, floats)) = weights_for(&card) else { return };
    let weights = atd_core::Weights::from_bytes(&bytes).expect("the harness writes valid files");
    // Any batch size: the plan only counts memory, and refuses what is over the budget.
    if let Err(e) = Plan::new(&weights, detector, batch, ConvStrategy::Direct) {
        assert!(!e.to_string().is_empty());
        return;
    }
    if floats > RUN_FLOATS || batch > RUN_BATCH {
        return;
    }
    let mut engine = Engine::cpu(&bytes, detector, batch).expect("the plan was accepted");
    let x = vec![0.5f32; batch * atd_core::IMAGE_VALUES];
    let scores = pollster::block_on(engine.score(&x)).expect("a built engine scores its batch");
    assert_eq!(scores.len(), batch);
    let Ok(mut options) = serde_json::from_str::<AttackOptions>(options_json) else { return };
    // The per-input time limit is for parsers and plans, not for long attacks.
    options.attack.steps = options.attack.steps.min(3);
    options.attack.restarts = options.attack.restarts.min(2);
    let Ok(result) = pollster::block_on(engine.attack(&x, &options, |_, _| true)) else { return };
    let eps = options.attack.eps;
    for (a, c) in result.adversarial.iter().zip(&x) {
        assert!((0.0..=1.0).contains(a) && (a - c).abs() <= eps + 1e-6, "{a} from {c} at eps {eps}");
    }
});
