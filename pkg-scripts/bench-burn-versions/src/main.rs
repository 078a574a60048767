//! One training step (forward, cross-entropy, backward, SGD with Nesterov momentum and weight
//! decay) and one PGD step (forward and input gradient, eval mode) of a pre-activation ResNet
//! preset, built from Burn's own modules on flex, timed on random images; one JSON line each.
//! The same source builds against every Burn version the script names.
//!
//!   bench-burn-versions <small|wide> <batch> <iterations>

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Tensor, TensorData};

fn conv(cin: usize, cout: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = if kernel == 3 { PaddingConfig2d::Explicit(1, 1, 1, 1) } else { PaddingConfig2d::Valid };
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(pad)
        .with_bias(false)
        .init(device)
}

#[derive(Module, Debug)]
struct Block {
    bn0: BatchNorm,
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            bn0: BatchNormConfig::new(cin).init(device),
            conv1: conv(cin, cout, 3, stride, device),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv(cout, cout, 3, 1, device),
            shortcut: (stride != 1 || cin != cout).then(|| conv(cin, cout, 1, stride, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pre = relu(self.bn0.forward(x.clone()));
        let shortcut = match &self.shortcut {
            Some(c) => c.forward(pre.clone()),
            None => x,
        };
        let out = self.conv1.forward(pre);
        self.conv2.forward(relu(self.bn1.forward(out))) + shortcut
    }
}

#[derive(Module, Debug)]
struct Net {
    stem: Conv2d,
    blocks: Vec<Block>,
    final_bn: BatchNorm,
    head: Linear,
}

impl Net {
    fn new(widths: [usize; 4], device: &Device) -> Self {
        let mut blocks = vec![Block::new(widths[0], widths[0], 1, device)];
        for w in widths.windows(2) {
            blocks.push(Block::new(w[0], w[1], 2, device));
        }
        Self {
            stem: conv(3, widths[0], 3, 1, device),
            blocks,
            final_bn: BatchNormConfig::new(widths[3]).init(device),
            head: LinearConfig::new(widths[3], 10).init(device),
        }
    }

    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let mut out = self.stem.forward(x);
        for block in &self.blocks {
            out = block.forward(out);
        }
        let out = relu(self.final_bn.forward(out));
        let [b, c, _, _] = out.dims();
        self.head.forward(out.mean_dim(3).mean_dim(2).reshape([b, c]))
    }
}

fn cross_entropy(logits: Tensor<2>, one_hot: &Tensor<2>) -> Tensor<1> {
    -(log_softmax(logits, 1) * one_hot.clone()).sum_dim(1).mean()
}

fn timed(iterations: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (arch, batch, iterations) = (args[1].as_str(), args[2].parse::<usize>().unwrap(), args[3].parse().unwrap());
    let widths = if arch == "wide" { [32, 64, 128, 256] } else { [16, 32, 64, 128] };
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let mut net = Net::new(widths, &device);
    let pixels: Vec<f32> = (0..batch * 3 * 32 * 32).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [batch, 3, 32, 32]), &plain);
    let one_hot: Vec<f32> = (0..batch * 10).map(|i| if i % 10 == (i / 10) % 10 { 1.0 } else { 0.0 }).collect();
    let one_hot = Tensor::<2>::from_data(TensorData::new(one_hot, [batch, 10]), &device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig { momentum: 0.9, dampening: 0.0, nesterov: true }))
        .with_weight_decay(Some(WeightDecayConfig { penalty: 5e-4 }))
        .init();
    let train = timed(iterations, || {
        let loss = cross_entropy(net.logits(x.clone().autodiff()), &one_hot);
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(0.01, net.clone(), grads);
        let _ = net.head.weight.val().sum().into_data();
    });
    let frozen = net.valid();
    let one_hot_plain = Tensor::<2>::from_data(one_hot.clone().into_data(), &plain);
    let pgd = timed(iterations, || {
        let leaf = x.clone().autodiff().require_grad();
        let loss = cross_entropy(frozen.logits(leaf.clone()), &one_hot_plain);
        let grads = loss.backward();
        let _ = leaf.grad(&grads).expect("tracked").sum().into_data();
    });
    let images = (batch * iterations) as f64;
    println!("{{\"arch\":\"{arch}\",\"batch\":{batch},\"train\":{:.1},\"pgd\":{:.1}}}", images / train, images / pgd);
}
