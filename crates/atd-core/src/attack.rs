//! The words the CLI, the Burn models, the WGSL engine and the page share: which detector, which
//! way an attack pushes its score, the attack's default step size, the four evaluation settings,
//! and how a perturbation is measured and shown.

/// An OOD detector a weights file can hold. Higher scores mean more in-distribution; `name()` is
/// its key among the card's thresholds and on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// ATD: the discriminator's probability that the extractor's feature is in-distribution.
    Atd,
    /// Maximum softmax probability of the classifier head.
    Msp,
    /// Mahalanobis distance to the closest class mean (shared covariance), negated.
    Md,
    /// Relative Mahalanobis distance (class distance minus background distance), negated.
    Rmd,
    /// OpenMax: one minus the probability of the "unknown" class.
    Openmax,
    /// One minus the softmax probability of the classifier's extra outlier class (ATOM, Chen et
    /// al. 2021: a K+1-way classifier trained with outliers as class K+1).
    #[serde(rename = "outlier-class")]
    #[cfg_attr(feature = "clap", value(name = "outlier-class"))]
    OutlierClass,
}

impl Detector {
    pub const ALL: [Detector; 6] =
        [Detector::Atd, Detector::Msp, Detector::Md, Detector::Rmd, Detector::Openmax, Detector::OutlierClass];

    pub fn name(self) -> &'static str {
        match self {
            Detector::Atd => "atd",
            Detector::Msp => "msp",
            Detector::Md => "md",
            Detector::Rmd => "rmd",
            Detector::Openmax => "openmax",
            Detector::OutlierClass => "outlier-class",
        }
    }

    /// The detector called `name` (as `name()` writes it).
    pub fn from_name(name: &str) -> Result<Detector, String> {
        Detector::ALL.into_iter().find(|d| d.name() == name).ok_or_else(|| {
            let names: Vec<_> = Detector::ALL.iter().map(|d| d.name()).collect();
            format!("unknown detector {name:?} (one of {})", names.join(", "))
        })
    }
}

/// Which way an attack pushes a detector's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Make the input look in-distribution (raise the score): the attack on OOD inputs.
    In,
    /// Make the input look out-of-distribution (lower the score): the attack on in-distribution inputs.
    Out,
}

impl Direction {
    /// The sign that turns "push the score this way" into "maximise".
    pub fn sign(self) -> f32 {
        match self {
            Direction::In => 1.0,
            Direction::Out => -1.0,
        }
    }
}

/// The paper's PGD step size: 2.5 eps / steps (Madry et al.), so the attack can cross the ball.
pub fn default_step_size(eps: f32, steps: usize) -> f32 {
    2.5 * eps / steps.max(1) as f32
}

/// One L-infinity attack's budget and schedule, the same for the Burn attacks
/// (`atd_train::PgdConfig`) and the WGSL engine (`atd_gpu::AttackOptions`), which add only what
/// is their own (the input box; the direction and read-back cadence).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackSpec {
    pub eps: f32,
    pub steps: usize,
    /// `None`: `default_step_size(eps, steps)`.
    #[serde(default)]
    pub step_size: Option<f32>,
    /// Left out in JSON: 1.
    #[serde(default = "one")]
    pub restarts: usize,
    /// The random start's seed; restart r uses seed + r, and both implementations draw the same
    /// noise from it (`atd_core::noise`). Left out in JSON: 0.
    #[serde(default)]
    pub seed: u32,
    /// Left out in JSON: true.
    #[serde(default = "yes")]
    pub random_start: bool,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

impl AttackSpec {
    /// The paper's setting: step size 2.5 eps / steps, one random start, seed 0.
    pub fn new(eps: f32, steps: usize) -> Self {
        Self { eps, steps, step_size: None, restarts: 1, seed: 0, random_start: true }
    }

    pub fn with_seed(self, seed: u32) -> Self {
        Self { seed, ..self }
    }

    pub fn with_restarts(self, restarts: usize) -> Self {
        Self { restarts, ..self }
    }

    pub fn with_step_size(self, step_size: f32) -> Self {
        Self { step_size: Some(step_size), ..self }
    }

    pub fn step_size(&self) -> f32 {
        self.step_size.unwrap_or_else(|| default_step_size(self.eps, self.steps))
    }

    /// What makes an attack meaningless: a negative or non-finite budget or step, no restart.
    pub fn check(&self) -> Result<(), String> {
        if !self.eps.is_finite() || self.eps < 0.0 {
            return Err(format!("eps must be a non-negative number, not {}", self.eps));
        }
        if self.restarts == 0 {
            return Err("at least one restart".into());
        }
        let step = self.step_size();
        if !step.is_finite() || step < 0.0 {
            return Err(format!("the step size must be a non-negative number, not {step}"));
        }
        Ok(())
    }
}

/// The paper's four evaluation settings: which images the attack perturbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Setting {
    /// Nothing attacked.
    Clean,
    /// In-distribution images pushed towards OOD.
    In,
    /// OOD images pushed towards in-distribution.
    Out,
    /// Both at once: the worst case for the detector.
    InAndOut,
}

impl Setting {
    pub const ALL: [Setting; 4] = [Setting::Clean, Setting::In, Setting::Out, Setting::InAndOut];

    pub fn name(self) -> &'static str {
        match self {
            Setting::Clean => "Clean",
            Setting::In => "In",
            Setting::Out => "Out",
            Setting::InAndOut => "In-and-Out",
        }
    }

    /// Its position in `ALL` (and in per-setting result lists).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn attacks_in(self) -> bool {
        matches!(self, Setting::In | Setting::InAndOut)
    }

    pub fn attacks_out(self) -> bool {
        matches!(self, Setting::Out | Setting::InAndOut)
    }
}

/// Largest per-value change between two byte images, in 1/255 units: the L-infinity distance
/// of what a PNG holds.
pub fn linf_levels(clean: &[u8], adversarial: &[u8]) -> u32 {
    clean.iter().zip(adversarial).map(|(c, a)| (*c as i32 - *a as i32).unsigned_abs()).max().unwrap_or(0)
}

/// The perturbation `adversarial - clean`, mapped from [-eps, eps] to [0, 255] so the whole
/// ball fills the range (mid-grey = unchanged). Below one level of eps the scale stops growing,
/// so a zero budget shows grey, not noise.
pub fn perturbation_map(clean: &[u8], adversarial: &[u8], eps: f32) -> Vec<u8> {
    let scale = 127.5 / (eps * 255.0).max(1.0);
    clean
        .iter()
        .zip(adversarial)
        .map(|(c, a)| (127.5 + (*a as f32 - *c as f32) * scale).clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_names_round_trip_and_unknown_names_list_the_choices() {
        for d in Detector::ALL {
            assert_eq!(Detector::from_name(d.name()), Ok(d));
        }
        let err = Detector::from_name("odin").unwrap_err();
        assert!(err.contains("odin") && err.contains("atd, msp, md, rmd, openmax, outlier-class"), "{err}");
    }

    #[test]
    fn settings_are_indexed_in_the_paper_order() {
        for (i, s) in Setting::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        let attacked: Vec<_> = Setting::ALL.iter().map(|s| (s.attacks_in(), s.attacks_out())).collect();
        assert_eq!(attacked, [(false, false), (true, false), (false, true), (true, true)]);
    }

    #[test]
    fn perturbation_map_fills_the_range_at_eps_and_is_grey_where_unchanged() {
        let clean = [100, 100, 100, 0];
        let adversarial = [108, 92, 100, 0];
        assert_eq!(perturbation_map(&clean, &adversarial, 8.0 / 255.0), [255, 0, 127, 127]);
        // A zero budget: no division by zero, unchanged values stay grey.
        assert_eq!(perturbation_map(&clean, &clean, 0.0), [127; 4]);
        assert_eq!(linf_levels(&clean, &adversarial), 8);
        assert_eq!(linf_levels(&clean, &clean), 0);
    }

    #[test]
    fn the_default_step_size_is_two_and_a_half_eps_over_the_steps() {
        assert!((default_step_size(0.04, 10) - 0.01).abs() < 1e-8);
        // Zero steps (no attack) still gives a finite step.
        assert!((default_step_size(0.04, 0) - 0.1).abs() < 1e-8);
    }

    #[test]
    fn an_attack_spec_defaults_its_step_and_refuses_what_cannot_run() {
        let spec = AttackSpec::new(0.04, 10).with_seed(3).with_restarts(2);
        assert_eq!((spec.seed, spec.restarts, spec.random_start), (3, 2, true));
        assert!((spec.step_size() - 0.01).abs() < 1e-8);
        assert_eq!(spec.clone().with_step_size(0.5).step_size(), 0.5);
        assert!(spec.check().is_ok());
        assert!(spec.clone().with_restarts(0).check().unwrap_err().contains("restart"));
        assert!(AttackSpec::new(f32::NAN, 10).check().unwrap_err().contains("eps"));
        assert!(spec.clone().with_step_size(-1.0).check().unwrap_err().contains("step size"));
        // Written without a step size, it reads back with the default.
        let json = r#"{"eps":0.04,"steps":10,"restarts":1,"seed":0,"random_start":true}"#;
        assert_eq!(serde_json::from_str::<AttackSpec>(json).unwrap(), AttackSpec::new(0.04, 10));
    }
}
