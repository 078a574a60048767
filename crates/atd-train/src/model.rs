//! The Burn modules: pre-activation ResNet extractor, classifier head, ATD discriminator and
//! generator, fitted baseline statistics; built from a model card, exported to and imported
//! from the weights file.

use atd_core::card::{Activation, DiscriminatorSpec, ExtractorSpec, GeneratorSpec, ModelCard, Padding, Shortcut};
use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};

use crate::batch_norm::batch_norm_activate;
use crate::conv::conv2d;

fn conv3x3(cin: usize, cout: usize, stride: usize, padding: Padding, device: &Device) -> Conv2d {
    let pad = match (stride, padding) {
        (1, _) | (_, Padding::Symmetric) => PaddingConfig2d::Explicit(1, 1, 1, 1),
        // TensorFlow SAME for a 3x3 stride-2 conv on an even size: bottom and right only.
        (_, Padding::Same) => PaddingConfig2d::Explicit(0, 0, 1, 1),
    };
    Conv2dConfig::new([cin, cout], [3, 3]).with_stride([stride, stride]).with_padding(pad).with_bias(false).init(device)
}

fn batch_norm(channels: usize, epsilon: f64, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).with_epsilon(epsilon).init(device)
}

#[derive(Module, Debug)]
pub struct PreActBlock {
    pub bn0: BatchNorm,
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub shortcut: Option<Conv2d>,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    shortcut_kind: Shortcut,
}

impl PreActBlock {
    fn new(spec: &ExtractorSpec, cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || cin != cout).then(|| match spec.shortcut {
            Shortcut::Conv1x1 => Conv2dConfig::new([cin, cout], [1, 1])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Valid)
                .with_bias(false)
                .init(device),
            Shortcut::Conv3x3 => conv3x3(cin, cout, stride, spec.padding, device),
        });
        Self {
            bn0: batch_norm(cin, spec.bn_epsilon, device),
            conv1: conv3x3(cin, cout, stride, spec.padding, device),
            bn1: batch_norm(cout, spec.bn_epsilon, device),
            conv2: conv3x3(cout, cout, 1, spec.padding, device),
            shortcut,
            activation: spec.activation,
            shortcut_kind: spec.shortcut,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pre = batch_norm_activate(&self.bn0, x.clone(), self.activation);
        let shortcut = match (&self.shortcut, self.shortcut_kind) {
            (None, _) => x,
            (Some(conv), Shortcut::Conv1x1) => conv2d(conv, pre.clone()),
            (Some(conv), Shortcut::Conv3x3) => conv2d(conv, x),
        };
        let out = conv2d(&self.conv1, pre);
        let out = conv2d(&self.conv2, batch_norm_activate(&self.bn1, out, self.activation));
        out + shortcut
    }
}

/// Pre-activation ResNet feature extractor; input in [0,1], normalisation inside.
#[derive(Module, Debug)]
pub struct PreActResNet {
    pub stem: Conv2d,
    pub blocks: Vec<PreActBlock>,
    /// OSAD's denoising blocks, each after the block `denoise_after` names.
    pub denoise: Vec<DenoiseBlock>,
    #[module(skip)]
    denoise_after: Vec<usize>,
    pub final_bn: BatchNorm,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    mean: [f32; 3],
    #[module(skip)]
    std: [f32; 3],
}

impl PreActResNet {
    pub fn new(spec: &ExtractorSpec, device: &Device) -> Self {
        Self {
            stem: conv3x3(3, spec.widths[0], 1, Padding::Symmetric, device),
            blocks: spec.block_layout().into_iter().map(|(i, o, s)| PreActBlock::new(spec, i, o, s, device)).collect(),
            denoise: spec.denoise_layout().into_iter().map(|(_, c)| DenoiseBlock::new(c, device)).collect(),
            denoise_after: spec.denoise_layout().into_iter().map(|(block, _)| block).collect(),
            final_bn: batch_norm(spec.feature_dim(), spec.bn_epsilon, device),
            activation: spec.activation,
            mean: spec.input_mean,
            std: spec.input_std,
        }
    }

    /// `[B, 3, H, W]` images in [0,1] to `[B, F]` features.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let device = x.device();
        let mean = Tensor::<1>::from_floats(self.mean, &device).reshape([1, 3, 1, 1]);
        let inv_std = Tensor::<1>::from_floats(self.std.map(|s| 1.0 / s), &device).reshape([1, 3, 1, 1]);
        let mut out = conv2d(&self.stem, (x - mean) * inv_std);
        for (i, block) in self.blocks.iter().enumerate() {
            out = block.forward(out);
            if let Some(k) = self.denoise_after.iter().position(|&after| after == i) {
                out = self.denoise[k].forward(out);
            }
        }
        let out = batch_norm_activate(&self.final_bn, out, self.activation);
        let [b, c, _, _] = out.dims();
        out.mean_dim(3).mean_dim(2).reshape([b, c])
    }
}

/// OSAD's dual-attentive feature denoising (Shao et al. 2020, after Xie et al. 2019): a
/// non-local mean of the feature map (each position a softmax-weighted mean of all positions by
/// scaled dot-product similarity), weighted by channel attention (squeeze and excite) and by
/// spatial attention (a 3x3 convolution of the channel mean and max), then a 1x1 convolution
/// added back to the input. The 1x1 convolution starts at zero, so the block starts as the
/// identity.
#[derive(Module, Debug)]
pub struct DenoiseBlock {
    pub squeeze: Linear,
    pub excite: Linear,
    pub spatial: Conv2d,
    pub output: Conv2d,
}

impl DenoiseBlock {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            squeeze: LinearConfig::new(channels, channels / 4).init(device),
            excite: LinearConfig::new(channels / 4, channels).init(device),
            spatial: Conv2dConfig::new([2, 1], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device),
            output: Conv2dConfig::new([channels, channels], [1, 1])
                .with_bias(false)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let flat = x.clone().reshape([b, c, h * w]);
        let similarity = flat.clone().swap_dims(1, 2).matmul(flat.clone()) / (c as f32).sqrt();
        let weights = burn::tensor::activation::softmax(similarity, 2); // [b, hw, hw]
        let denoised = flat.matmul(weights.swap_dims(1, 2)).reshape([b, c, h, w]);
        let pooled = denoised.clone().mean_dim(3).mean_dim(2).reshape([b, c]);
        let channel = sigmoid(self.excite.forward(relu(self.squeeze.forward(pooled)))).reshape([b, c, 1, 1]);
        let denoised = denoised * channel;
        let summary = Tensor::cat(vec![denoised.clone().mean_dim(1), denoised.clone().max_dim(1)], 1);
        let spatial = sigmoid(conv2d(&self.spatial, summary));
        x + conv2d(&self.output, denoised * spatial)
    }
}

/// A bias-free linear layer with an optional BatchNorm (the reference's 1x1 conv + BN).
#[derive(Module, Debug)]
pub struct DenseLayer {
    pub linear: Linear,
    pub bn: Option<BatchNorm>,
}

impl DenseLayer {
    fn new(cin: usize, cout: usize, with_bn: bool, device: &Device) -> Self {
        Self { linear: gan_linear(cin, cout, false, device), bn: with_bn.then(|| gan_batch_norm(cout, device)) }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let out = self.linear.forward(x);
        match &self.bn {
            Some(bn) => bn.forward(out),
            None => out,
        }
    }
}

/// DCGAN initialisation, as the reference's `weights_init`: weights ~ N(0, 0.02).
fn gan_linear(cin: usize, cout: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(cin, cout)
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
        .init(device)
}

/// BN gamma ~ N(1, 0.02), beta = 0.
fn gan_batch_norm(channels: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(channels).init(device);
    bn.gamma = Param::from_tensor(Tensor::random([channels], burn::tensor::Distribution::Normal(1.0, 0.02), device));
    bn
}

/// The ATD discriminator: features to one logit (higher = in-distribution).
#[derive(Module, Debug)]
pub struct Discriminator {
    pub hidden: Vec<DenseLayer>,
    pub output: Linear,
    #[module(skip)]
    slope: f64,
}

impl Discriminator {
    pub fn new(spec: &DiscriminatorSpec, feature_dim: usize, device: &Device) -> Self {
        let mut cin = feature_dim;
        let hidden = spec
            .widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let layer = DenseLayer::new(cin, w, i > 0, device);
                cin = w;
                layer
            })
            .collect();
        Self { hidden, output: gan_linear(cin, 1, false, device), slope: spec.slope as f64 }
    }

    /// `[B, F]` features to `[B]` logits.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<1> {
        let mut out = features;
        for layer in &self.hidden {
            out = leaky_relu(layer.forward(out), self.slope);
        }
        let b = out.dims()[0];
        self.output.forward(out).reshape([b])
    }
}

/// A transposed 4x4 convolution of stride 2 (doubling the size), DCGAN's N(0, 0.02) weights.
fn upsampling_conv(cin: usize, cout: usize, bias: bool, device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new([cin, cout], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
        .init(device)
}

#[derive(Module, Debug)]
pub struct UpBlock {
    pub conv: ConvTranspose2d,
    pub bn: BatchNorm,
}

/// A DCGAN generator of 32x32 images: a vector -> a 4x4 map of 4w channels -> two upsampling
/// blocks (transposed convolution, BatchNorm, ReLU) -> a transposed convolution to RGB at 32x32
/// -> sigmoid (pixels in [0, 1]). OpenGAN-pixel's generator (from noise) and OSAD's decoder (from
/// features); it trains beside the network and is never part of a weights file.
#[derive(Module, Debug)]
pub struct ImageGenerator {
    pub project: Linear,
    pub project_bn: BatchNorm,
    pub up: Vec<UpBlock>,
    pub to_image: ConvTranspose2d,
}

impl ImageGenerator {
    pub fn new(input_dim: usize, width: usize, device: &Device) -> Self {
        let up = [(4 * width, 2 * width), (2 * width, width)]
            .map(|(cin, cout)| UpBlock {
                conv: upsampling_conv(cin, cout, false, device),
                bn: gan_batch_norm(cout, device),
            })
            .into();
        Self {
            project: gan_linear(input_dim, 4 * width * 16, false, device),
            project_bn: gan_batch_norm(4 * width, device),
            up,
            to_image: upsampling_conv(width, 3, true, device),
        }
    }

    /// `[B, input_dim]` to `[B, 3, 32, 32]` images.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<4> {
        let b = input.dims()[0];
        let channels = self.project_bn.gamma.dims()[0];
        let mut x = relu(self.project_bn.forward(self.project.forward(input).reshape([b, channels, 4, 4])));
        for block in &self.up {
            x = relu(block.bn.forward(block.conv.forward(x)));
        }
        sigmoid(self.to_image.forward(x))
    }
}

/// The ATD generator: noise to fake features.
#[derive(Module, Debug)]
pub struct Generator {
    pub hidden: Vec<DenseLayer>,
    pub output: Linear,
    #[module(skip)]
    pub noise_dim: usize,
}

impl Generator {
    pub fn new(spec: &GeneratorSpec, feature_dim: usize, device: &Device) -> Self {
        let mut cin = spec.noise_dim;
        let hidden = spec
            .widths
            .iter()
            .map(|&w| {
                let layer = DenseLayer::new(cin, w, true, device);
                cin = w;
                layer
            })
            .collect();
        // The reference's last conv keeps PyTorch's default bias init; N(0, 0.02) weights.
        Self { hidden, output: gan_linear(cin, feature_dim, true, device), noise_dim: spec.noise_dim }
    }

    pub fn forward(&self, noise: Tensor<2>) -> Tensor<2> {
        let mut out = noise;
        for layer in &self.hidden {
            out = relu(layer.forward(out));
        }
        self.output.forward(out)
    }
}

/// Class-conditional Gaussians with shared covariance, and a background Gaussian (MD / RMD).
#[derive(Module, Debug)]
pub struct Mahalanobis {
    pub class_means: Param<Tensor<2>>,
    pub class_precision: Param<Tensor<2>>,
    pub background_mean: Param<Tensor<1>>,
    pub background_precision: Param<Tensor<2>>,
}

/// OpenMax: mean logit vector per class and a Weibull fit (shape, scale, location) per class.
#[derive(Module, Debug)]
pub struct OpenMax {
    pub mav: Param<Tensor<2>>,
    pub weibull: Param<Tensor<2>>,
    #[module(skip)]
    pub alpha_rank: usize,
}

#[derive(Module, Debug)]
pub struct Baselines {
    pub mahalanobis: Option<Mahalanobis>,
    pub openmax: Option<OpenMax>,
}

/// Everything a weights file can hold.
#[derive(Module, Debug)]
pub struct AtdNet {
    pub extractor: PreActResNet,
    pub classifier: Option<Linear>,
    pub discriminator: Option<Discriminator>,
    pub generator: Option<Generator>,
    pub baselines: Option<Baselines>,
    /// Training-time heads, in checkpoints but never in a weights file: OpenGAN-pixel's image
    /// generator or OSAD's decoder, and OSAD's rotation classifier.
    pub image_generator: Option<ImageGenerator>,
    pub rotation_head: Option<Linear>,
}

/// A network together with the card that describes it.
#[derive(Debug)]
pub struct Model {
    pub card: ModelCard,
    pub net: AtdNet,
}

/// Zeros of the right shape, to be filled by fitting or loading.
fn zeros_param<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::zeros(shape, device))
}

impl Model {
    /// A freshly initialised model of the card's architecture.
    pub fn new(card: ModelCard, device: &Device) -> anyhow::Result<Self> {
        card.check().map_err(anyhow::Error::msg)?;
        let f = card.extractor.feature_dim();
        let c = card.classifier.unwrap_or(0);
        let baselines = card.baselines.as_ref().map(|b| Baselines {
            mahalanobis: b.mahalanobis.then(|| Mahalanobis {
                class_means: zeros_param([c, f], device),
                class_precision: zeros_param([f, f], device),
                background_mean: zeros_param([f], device),
                background_precision: zeros_param([f, f], device),
            }),
            openmax: b.openmax.as_ref().map(|o| OpenMax {
                mav: zeros_param([c, c], device),
                weibull: zeros_param([c, 3], device),
                alpha_rank: o.alpha_rank,
            }),
        });
        let net = AtdNet {
            extractor: PreActResNet::new(&card.extractor, device),
            classifier: card.classifier.map(|c| LinearConfig::new(f, c).init(device)),
            discriminator: card.discriminator.as_ref().map(|d| Discriminator::new(d, f, device)),
            generator: card.generator.as_ref().map(|g| Generator::new(g, f, device)),
            baselines,
            image_generator: None,
            rotation_head: None,
        };
        Ok(Self { card, net })
    }

    /// A copy for inference and attacks: plain tensors, BatchNorm on running statistics.
    pub fn valid(&self) -> Self {
        Self { card: self.card.clone(), net: self.net.valid() }
    }
}

/// Build a tensor from f32 values on `device`.
pub fn tensor_from<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The index of the largest value of each row of `[B, C]` (the predicted class of logits).
pub fn argmax_rows(logits: Tensor<2>) -> Vec<usize> {
    let c = logits.dims()[1];
    to_vec(logits).chunks_exact(c).map(|r| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0).collect()
}

/// Read a tensor back as f32 values.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("a float tensor")
}

impl Model {
    /// Every BatchNorm of the network, in a fixed order.
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let net = &mut self.net;
        let mut all: Vec<&mut BatchNorm> = Vec::new();
        for block in &mut net.extractor.blocks {
            all.push(&mut block.bn0);
            all.push(&mut block.bn1);
        }
        all.push(&mut net.extractor.final_bn);
        let dense = net
            .discriminator
            .iter_mut()
            .flat_map(|d| d.hidden.iter_mut())
            .chain(net.generator.iter_mut().flat_map(|g| g.hidden.iter_mut()));
        all.extend(dense.filter_map(|layer| layer.bn.as_mut()));
        all
    }

    /// Give every BatchNorm non-trivial affine parameters and running statistics (seeded), so
    /// that parity and gradient tests exercise them instead of a near-identity.
    pub fn randomise_batch_norm_statistics(&mut self, seed: u64) {
        let mut rng = crate::rng::Rng::new(seed);
        for bn in self.batch_norms_mut() {
            let device = bn.gamma.val().device();
            let c = bn.gamma.val().dims()[0];
            let mut draw = |lo: f32, hi: f32| (0..c).map(|_| lo + (hi - lo) * rng.uniform()).collect::<Vec<f32>>();
            let (gamma, beta, mean, var) = (draw(0.5, 1.5), draw(-0.3, 0.3), draw(-0.3, 0.3), draw(0.5, 2.0));
            bn.gamma = Param::from_tensor(tensor_from(gamma, [c], &device));
            bn.beta = Param::from_tensor(tensor_from(beta, [c], &device));
            bn.running_mean = RunningState::new(tensor_from(mean, [c], &device));
            bn.running_var = RunningState::new(tensor_from(var, [c], &device));
        }
    }

    /// Fit the baselines the card asks for (MD/RMD Gaussians, OpenMax) from training features
    /// `[N, F]` and their labels.
    pub fn fit_baselines(&mut self, features: &[f32], labels: &[usize]) -> anyhow::Result<()> {
        let spec =
            self.card.baselines.clone().ok_or_else(|| anyhow::anyhow!("the model card asks for no baselines"))?;
        let classes = self.card.classifier.ok_or_else(|| anyhow::anyhow!("baselines need a classifier head"))?;
        let f = self.card.extractor.feature_dim();
        let n = labels.len();
        anyhow::ensure!(labels.iter().all(|&y| y < classes), "a label is outside 0..{classes}");
        let device = self.net.extractor.stem.weight.val().device();
        let logits = {
            let feats = tensor_from(features.to_vec(), [n, f], &device);
            to_vec(self.valid().logits_from_features(feats))
        };
        let baselines = self.net.baselines.as_mut().expect("built from the card");
        if let Some(m) = baselines.mahalanobis.as_mut() {
            let fit = crate::fit::fit_mahalanobis(features, labels, classes, f)?;
            m.class_means = Param::from_tensor(tensor_from(fit.class_means, [classes, f], &device));
            m.class_precision = Param::from_tensor(tensor_from(fit.class_precision, [f, f], &device));
            m.background_mean = Param::from_tensor(tensor_from(fit.background_mean, [f], &device));
            m.background_precision = Param::from_tensor(tensor_from(fit.background_precision, [f, f], &device));
        }
        if let (Some(om), Some(om_spec)) = (baselines.openmax.as_mut(), spec.openmax.as_ref()) {
            let (mav, weibull) = crate::fit::fit_openmax(&logits, labels, classes, om_spec.tail_size)?;
            om.mav = Param::from_tensor(tensor_from(mav, [classes, classes], &device));
            om.weibull = Param::from_tensor(tensor_from(weibull, [classes, 3], &device));
        }
        Ok(())
    }
}
