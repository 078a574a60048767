//! The model card: the JSON stored in the safetensors `__metadata__` that says which
//! architecture the tensors belong to, and so which tensors a valid file must hold.

use serde::{Deserialize, Serialize};

/// Metadata key under which the card is stored in the safetensors header.
pub const CARD_METADATA_KEY: &str = "atd_model_card";
/// Format tag of the current weights contract.
pub const CARD_FORMAT: &str = "atd-weights/1";

/// CIFAR-10 channel statistics used for the in-model input normalisation.
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const CIFAR10_STD: [f32; 3] = [0.2471, 0.2435, 0.2616];
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Swish,
}

/// Shortcut of a block whose stride or width changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortcut {
    /// He et al.: 1x1 strided conv on the pre-activated input `act(bn0(x))`.
    Conv1x1,
    /// DeepMind / RobustBench: 3x3 strided conv on the raw block input `x`.
    Conv3x3,
}

/// Padding of the 3x3 convolutions of stride 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// One pixel on every side.
    Symmetric,
    /// TensorFlow "SAME": stride-2 convs pad only right and bottom (DeepMind / RobustBench).
    Same,
}

/// A pre-activation ResNet feature extractor: stem conv, stages of pre-activation blocks
/// (the first stage at stride 1, every later stage starts with a stride-2 block), final BN +
/// activation, global average pool. Input normalisation `(x - mean) / std` is part of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtractorSpec {
    /// Channels of each stage; the stem outputs `widths[0]`, the feature has `widths.last()`.
    pub widths: Vec<usize>,
    /// Pre-activation blocks in each stage.
    pub blocks: Vec<usize>,
    pub activation: Activation,
    pub shortcut: Shortcut,
    pub padding: Padding,
    pub input_mean: [f32; 3],
    pub input_std: [f32; 3],
    pub bn_epsilon: f64,
    /// Stages followed by a dual-attentive feature-denoising block (OSAD, Shao et al. 2020): a
    /// non-local mean over the stage's positions, channel and spatial attention on it, a 1x1
    /// convolution added back to the stage's output. Empty for every other method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denoise: Vec<usize>,
}

impl ExtractorSpec {
    /// The default CPU-sized member: 4 stages of one block, widths 16..128 (ReLU, He shortcuts).
    pub fn small() -> Self {
        Self {
            widths: vec![16, 32, 64, 128],
            blocks: vec![1, 1, 1, 1],
            activation: Activation::Relu,
            shortcut: Shortcut::Conv1x1,
            padding: Padding::Symmetric,
            input_mean: CIFAR10_MEAN,
            input_std: CIFAR10_STD,
            bn_epsilon: 1e-5,
            denoise: vec![],
        }
    }

    /// The paper's extractor: DeepMind PreActResNet-18 with Swish (RobustBench `Rade2021Helper_R18_*`).
    pub fn preact_resnet18_swish() -> Self {
        Self {
            widths: vec![64, 128, 256, 512],
            blocks: vec![2, 2, 2, 2],
            activation: Activation::Swish,
            shortcut: Shortcut::Conv3x3,
            padding: Padding::Same,
            ..Self::small()
        }
    }

    /// The small preset at twice the width (widths 32-64-128-256): about 4x its arithmetic.
    pub fn wide() -> Self {
        Self { widths: vec![32, 64, 128, 256], ..Self::small() }
    }

    /// A minimal member for fast tests.
    pub fn tiny() -> Self {
        Self { widths: vec![4, 8], blocks: vec![1, 1], ..Self::small() }
    }

    pub fn feature_dim(&self) -> usize {
        *self.widths.last().expect("validated: at least one stage")
    }

    /// One line naming the architecture, as `atd info` and the page show it.
    pub fn description(&self) -> String {
        let denoise = if self.denoise.is_empty() {
            String::new()
        } else {
            format!(", denoising after stages {:?}", self.denoise)
        };
        format!(
            "pre-activation ResNet, widths {:?}, blocks {:?}, {:?}, {:?} shortcut, {:?} padding{denoise}, feature dim {}",
            self.widths,
            self.blocks,
            self.activation,
            self.shortcut,
            self.padding,
            self.feature_dim()
        )
    }

    /// The index of the last block of each stage followed by a denoising block, with its channels.
    pub fn denoise_layout(&self) -> Vec<(usize, usize)> {
        self.denoise.iter().map(|&s| (self.blocks[..=s].iter().sum::<usize>() - 1, self.widths[s])).collect()
    }

    /// Every block in order: (input channels, output channels, stride).
    pub fn block_layout(&self) -> Vec<(usize, usize, usize)> {
        let mut layout = Vec::new();
        let mut channels = self.widths[0];
        for (stage, (&width, &count)) in self.widths.iter().zip(&self.blocks).enumerate() {
            for b in 0..count {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                layout.push((channels, width, stride));
                channels = width;
            }
        }
        layout
    }

    fn check(&self) -> Result<(), String> {
        if self.widths.is_empty() || self.widths.len() != self.blocks.len() {
            return Err(format!(
                "extractor: widths ({}) and blocks ({}) must be non-empty and of equal length",
                self.widths.len(),
                self.blocks.len()
            ));
        }
        if self.widths.contains(&0) || self.blocks.contains(&0) {
            return Err("extractor: widths and block counts must be positive".into());
        }
        check_width("extractor widths", &self.widths)?;
        check_depth("extractor blocks", self.blocks.iter().try_fold(0usize, |sum, &b| sum.checked_add(b)))?;
        if self.input_std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("extractor: input_std must be finite and positive".into());
        }
        if self.input_mean.iter().any(|m| !m.is_finite()) {
            return Err("extractor: input_mean must be finite".into());
        }
        if !(self.bn_epsilon.is_finite() && self.bn_epsilon > 0.0) {
            return Err("extractor: bn_epsilon must be finite and positive".into());
        }
        if self.denoise.windows(2).any(|w| w[0] >= w[1]) || self.denoise.iter().any(|&s| s >= self.widths.len()) {
            return Err(format!(
                "extractor: denoise stages {:?} must be increasing stage indices below {}",
                self.denoise,
                self.widths.len()
            ));
        }
        if let Some(&s) = self.denoise.iter().find(|&&s| self.widths[s] < 4) {
            return Err(format!("extractor: a denoising block needs at least 4 channels (stage {s})"));
        }
        Ok(())
    }
}

/// The most layers (extractor blocks, discriminator or generator layers) and the widest layer
/// (channels, classes, noise) a card may declare: far beyond any real model (the paper's
/// extractor has 8 blocks of at most 512 channels), and small enough that the list of tensors
/// a card implies stays small, whatever a hostile file declares.
pub const MAX_LAYERS: usize = 1024;
pub const MAX_WIDTH: usize = 1 << 16;

fn check_width(what: &str, widths: &[usize]) -> Result<(), String> {
    match widths.iter().find(|&&w| w > MAX_WIDTH) {
        Some(w) => Err(format!("{what}: {w} is over the limit of {MAX_WIDTH}")),
        None => Ok(()),
    }
}

/// `count` is None when the count overflowed.
fn check_depth(what: &str, count: Option<usize>) -> Result<(), String> {
    match count {
        Some(n) if n <= MAX_LAYERS => Ok(()),
        Some(n) => Err(format!("{what}: {n} is over the limit of {MAX_LAYERS}")),
        None => Err(format!("{what}: more than the limit of {MAX_LAYERS}")),
    }
}

/// The ATD discriminator: bias-free linear layers (1x1 convs in the reference) with LeakyReLU,
/// BatchNorm after every hidden layer but the first, one logit out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorSpec {
    /// Hidden widths; the reference uses [512, 256, 128, 64] on a 512-d feature.
    pub widths: Vec<usize>,
    pub slope: f32,
}

impl DiscriminatorSpec {
    /// The reference layout scaled to the feature size: [F, F/2, F/4, F/8] (ndf = F/8).
    pub fn for_features(feature_dim: usize) -> Self {
        let ndf = (feature_dim / 8).max(1);
        Self { widths: vec![ndf * 8, ndf * 4, ndf * 2, ndf], slope: 0.2 }
    }
}

/// The ATD generator of fake features: noise -> bias-free linear + BN + ReLU layers -> a linear
/// layer with bias to the feature size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSpec {
    pub noise_dim: usize,
    /// Hidden widths; the reference uses [512, 256, 128, 256] (ngf = 64).
    pub widths: Vec<usize>,
}

impl GeneratorSpec {
    /// The reference layout scaled to the feature size (ngf = F/8).
    pub fn for_features(feature_dim: usize) -> Self {
        let ngf = (feature_dim / 8).max(1);
        Self { noise_dim: 100, widths: vec![ngf * 8, ngf * 4, ngf * 2, ngf * 4] }
    }
}

/// Statistics fitted on training features for the distance-based baselines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineSpec {
    /// Class-conditional Gaussians with a shared covariance (MD), plus a class-agnostic
    /// background Gaussian (RMD).
    pub mahalanobis: bool,
    /// OpenMax: mean activation vectors and Weibull tail fits in logit space.
    pub openmax: Option<OpenMaxSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenMaxSpec {
    /// How many of the top classes get recalibrated (`alpha` in Bendale and Boult 2016).
    pub alpha_rank: usize,
    /// Tail size used for the Weibull fit (recorded for the card).
    pub tail_size: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub extractor: ExtractorSpec,
    /// Number of classes of the classifier head (needed by MSP, OpenMax and `score`'s class).
    pub classifier: Option<usize>,
    pub discriminator: Option<DiscriminatorSpec>,
    pub generator: Option<GeneratorSpec>,
    pub baselines: Option<BaselineSpec>,
    pub class_names: Vec<String>,
    /// The classifier's last class stands for outliers (ATOM's K+1-way classifier): the
    /// in-distribution classes are the others, and the file's detector is `outlier-class`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outlier_class: bool,
    /// Score threshold at 95% TPR on in-distribution test data, per detector name.
    #[serde(default)]
    pub thresholds: std::collections::BTreeMap<String, f32>,
    /// Free-form training recipe (data, method, eps, epochs, seed, git revision, ...).
    #[serde(default)]
    pub training: serde_json::Value,
    /// Free-form measured metrics (validation accuracy, AUROC table, ...).
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl ModelCard {
    /// A card for an extractor with a classifier head on CIFAR-10, nothing else.
    pub fn classifier(extractor: ExtractorSpec) -> Self {
        Self {
            format: CARD_FORMAT.into(),
            extractor,
            classifier: Some(10),
            discriminator: None,
            generator: None,
            baselines: None,
            class_names: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            outlier_class: false,
            thresholds: Default::default(),
            training: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
        }
    }

    /// Whether the classifier head gives the MSP detector: a K-way head does; ATOM's K+1-way
    /// head splits its confidence with the outlier class and has `outlier-class` instead.
    pub fn has_msp(&self) -> bool {
        self.classifier.is_some() && !self.outlier_class
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let card: Self =
            serde_json::from_str(text).map_err(|e| format!("model card is not valid JSON for this format: {e}"))?;
        card.check()?;
        Ok(card)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a card always serialises")
    }

    /// Structural checks that do not need the tensors.
    pub fn check(&self) -> Result<(), String> {
        if self.format != CARD_FORMAT {
            return Err(format!("unsupported weights format {:?} (expected {CARD_FORMAT:?})", self.format));
        }
        self.extractor.check()?;
        if let Some(c) = self.classifier {
            if c < 2 {
                return Err(format!("classifier must have at least 2 classes, not {c}"));
            }
            if !self.class_names.is_empty() && self.class_names.len() != c {
                return Err(format!("{} class names for a {c}-class classifier", self.class_names.len()));
            }
        }
        if self.outlier_class && self.classifier.is_none_or(|c| c < 3) {
            return Err("an outlier class needs a classifier of at least 2 classes plus the outlier class".into());
        }
        if let Some(d) = &self.discriminator
            && (d.widths.is_empty() || d.widths.contains(&0))
        {
            return Err("discriminator widths must be non-empty and positive".into());
        }
        if let Some(c) = self.classifier {
            check_width("classifier classes", &[c])?;
        }
        if let Some((name, t)) = self.thresholds.iter().find(|(_, t)| !t.is_finite()) {
            return Err(format!("threshold {name} is {t}; thresholds must be finite"));
        }
        if let Some(d) = &self.discriminator {
            if !d.slope.is_finite() {
                return Err("discriminator slope must be finite".into());
            }
            check_width("discriminator widths", &d.widths)?;
            check_depth("discriminator layers", Some(d.widths.len()))?;
        }
        if let Some(g) = &self.generator {
            check_width("generator widths", &g.widths)?;
            check_width("generator noise_dim", &[g.noise_dim])?;
            check_depth("generator layers", Some(g.widths.len()))?;
        }
        if let Some(b) = &self.baselines {
            if b.openmax.is_some() && self.classifier.is_none() {
                return Err("OpenMax statistics need a classifier head".into());
            }
            if b.mahalanobis && self.classifier.is_none() {
                return Err("Mahalanobis statistics need class labels, so a classifier head".into());
            }
        }
        Ok(())
    }

    /// Every tensor a file with this card must hold, with its shape. Names follow the Burn
    /// module tree of `atd-train` (Linear weights are `[in, out]`).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut t = Vec::new();
        let e = &self.extractor;
        let bn = |t: &mut Vec<(String, Vec<usize>)>, prefix: &str, c: usize| {
            for p in ["gamma", "beta", "running_mean", "running_var"] {
                t.push((format!("{prefix}.{p}"), vec![c]));
            }
        };
        t.push(("extractor.stem.weight".into(), vec![e.widths[0], 3, 3, 3]));
        for (i, (cin, cout, stride)) in e.block_layout().into_iter().enumerate() {
            let p = format!("extractor.blocks.{i}");
            bn(&mut t, &format!("{p}.bn0"), cin);
            t.push((format!("{p}.conv1.weight"), vec![cout, cin, 3, 3]));
            bn(&mut t, &format!("{p}.bn1"), cout);
            t.push((format!("{p}.conv2.weight"), vec![cout, cout, 3, 3]));
            if stride != 1 || cin != cout {
                let k = match e.shortcut {
                    Shortcut::Conv1x1 => 1,
                    Shortcut::Conv3x3 => 3,
                };
                t.push((format!("{p}.shortcut.weight"), vec![cout, cin, k, k]));
            }
        }
        for (k, (_, c)) in e.denoise_layout().into_iter().enumerate() {
            let p = format!("extractor.denoise.{k}");
            t.push((format!("{p}.squeeze.weight"), vec![c, c / 4]));
            t.push((format!("{p}.squeeze.bias"), vec![c / 4]));
            t.push((format!("{p}.excite.weight"), vec![c / 4, c]));
            t.push((format!("{p}.excite.bias"), vec![c]));
            t.push((format!("{p}.spatial.weight"), vec![1, 2, 3, 3]));
            t.push((format!("{p}.spatial.bias"), vec![1]));
            t.push((format!("{p}.output.weight"), vec![c, c, 1, 1]));
        }
        bn(&mut t, "extractor.final_bn", e.feature_dim());
        let f = e.feature_dim();
        if let Some(c) = self.classifier {
            t.push(("classifier.weight".into(), vec![f, c]));
            t.push(("classifier.bias".into(), vec![c]));
        }
        if let Some(d) = &self.discriminator {
            let mut cin = f;
            for (i, &w) in d.widths.iter().enumerate() {
                t.push((format!("discriminator.hidden.{i}.linear.weight"), vec![cin, w]));
                if i > 0 {
                    bn(&mut t, &format!("discriminator.hidden.{i}.bn"), w);
                }
                cin = w;
            }
            t.push(("discriminator.output.weight".into(), vec![cin, 1]));
        }
        if let Some(g) = &self.generator {
            let mut cin = g.noise_dim;
            for (i, &w) in g.widths.iter().enumerate() {
                t.push((format!("generator.hidden.{i}.linear.weight"), vec![cin, w]));
                bn(&mut t, &format!("generator.hidden.{i}.bn"), w);
                cin = w;
            }
            t.push(("generator.output.weight".into(), vec![cin, f]));
            t.push(("generator.output.bias".into(), vec![f]));
        }
        if let (Some(b), Some(c)) = (&self.baselines, self.classifier) {
            if b.mahalanobis {
                t.push(("baselines.mahalanobis.class_means".into(), vec![c, f]));
                t.push(("baselines.mahalanobis.class_precision".into(), vec![f, f]));
                t.push(("baselines.mahalanobis.background_mean".into(), vec![f]));
                t.push(("baselines.mahalanobis.background_precision".into(), vec![f, f]));
            }
            if b.openmax.is_some() {
                t.push(("baselines.openmax.mav".into(), vec![c, c]));
                t.push(("baselines.openmax.weibull".into(), vec![c, 3]));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `engine_plan` fuzz target: a card declaring 5555555553 blocks made the
    /// loader list tens of billions of tensors (out of memory) before failing.
    #[test]
    fn cards_declaring_absurd_architectures_are_refused_before_listing_tensors() {
        let mut card = ModelCard::classifier(ExtractorSpec { blocks: vec![5_555_555_553, 1], ..ExtractorSpec::tiny() });
        let err = card.check().unwrap_err();
        assert!(err.contains("extractor blocks") && err.contains("limit of 1024"), "{err}");
        card.extractor.blocks = vec![usize::MAX, usize::MAX];
        assert!(card.check().unwrap_err().contains("more than the limit"));
        card.extractor = ExtractorSpec { widths: vec![4, MAX_WIDTH + 1], ..ExtractorSpec::tiny() };
        assert!(card.check().unwrap_err().contains("extractor widths"));
        card.extractor = ExtractorSpec::tiny();
        card.discriminator = Some(DiscriminatorSpec { widths: vec![4; MAX_LAYERS + 1], slope: 0.2 });
        assert!(card.check().unwrap_err().contains("discriminator layers"));
        card.discriminator = None;
        card.generator = Some(GeneratorSpec { noise_dim: usize::MAX, widths: vec![4] });
        assert!(card.check().unwrap_err().contains("generator noise_dim"));
        card.generator = None;
        assert_eq!(card.check(), Ok(()));
    }

    /// Found by the `engine_plan` fuzz target: an input mean of 2e96 parsed as an infinite f32,
    /// passed the checks, and made a card that serialises to `null` and cannot be read back. The
    /// exact float parser now refuses such a number itself; the checks still refuse non-finite
    /// numbers in a card built in code.
    #[test]
    fn cards_with_non_finite_numbers_are_refused() {
        let text = ModelCard::classifier(ExtractorSpec::tiny()).to_json().replace("0.4465", "2e96");
        let err = ModelCard::from_json(&text).unwrap_err();
        assert!(err.contains("number out of range"), "{err}");
        let mut card = ModelCard::classifier(ExtractorSpec::tiny());
        card.extractor.input_mean[2] = f32::INFINITY;
        assert!(card.check().unwrap_err().contains("input_mean must be finite"));
        card.extractor.input_mean[2] = 0.4465;
        card.extractor.bn_epsilon = 0.0;
        assert!(card.check().unwrap_err().contains("bn_epsilon"));
        card.extractor.bn_epsilon = 1e-5;
        card.discriminator = Some(DiscriminatorSpec { widths: vec![4], slope: f32::INFINITY });
        assert!(card.check().unwrap_err().contains("slope"));
    }

    /// Found by the `weights` fuzz target: serde_json's fast float parser read "1e-25" as
    /// 9.999999999999999e-26, so a card changed when written and read back (the workspace now
    /// enables its exact `float_roundtrip` parsing).
    #[test]
    fn every_number_of_a_card_survives_a_write_and_a_read() {
        let mut card = ModelCard::classifier(ExtractorSpec { bn_epsilon: 1e-25, ..ExtractorSpec::tiny() });
        card.thresholds.insert("msp".into(), 0.123_456_79);
        card.metrics = serde_json::json!({ "tiny": 1e-300, "long": 217.87612357262785, "big": 1.7976931348623157e308 });
        let again = ModelCard::from_json(&card.to_json()).unwrap();
        assert_eq!(again, card);
        assert_eq!(ModelCard::from_json(&again.to_json()).unwrap().to_json(), card.to_json());
    }

    #[test]
    fn an_outlier_class_is_written_only_when_present_and_needs_a_classifier() {
        let plain = ModelCard::classifier(ExtractorSpec::tiny());
        assert!(!plain.to_json().contains("outlier_class"), "older readers see the same card");
        let mut atom = plain.clone();
        atom.classifier = Some(11);
        atom.class_names.push("outlier".into());
        atom.outlier_class = true;
        assert_eq!(ModelCard::from_json(&atom.to_json()).unwrap(), atom);
        let headless = ModelCard { classifier: None, class_names: vec![], ..atom };
        let err = ModelCard::from_json(&headless.to_json()).unwrap_err();
        assert!(err.contains("outlier class"), "{err}");
    }
}
