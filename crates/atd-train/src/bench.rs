//! `atd bench`: training and attack throughput of an extractor architecture at a batch size, on
//! random images, one number each, so that a regression in either shows.

use atd_core::card::{ExtractorSpec, ModelCard};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use crate::detectors::cross_entropy;
use crate::model::{Model, tensor_from};
use crate::pgd::input_gradient;
use crate::rng::Rng;

#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    /// Images per second through one SGD step (forward, backward, update) of the classifier.
    pub train_images_per_second: f64,
    /// Image-steps per second of PGD: one forward and one input-gradient pass per image.
    pub pgd_image_steps_per_second: f64,
    /// Images per second through an eval-mode forward pass (logits, no autodiff).
    pub forward_images_per_second: f64,
}

fn random_batch(batch: usize, seed: u64, device: &Device) -> (Tensor<4>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let pixels = (0..batch * 3 * 32 * 32).map(|_| rng.uniform()).collect();
    let labels = (0..batch).map(|_| (rng.next_u64() % 10) as usize).collect();
    (tensor_from(pixels, [batch, 3, 32, 32], device), labels)
}

/// Time `iterations` training steps, PGD steps and forward passes of a freshly initialised
/// 10-class model of `spec` on batches of `batch` random images, after one untimed warm-up of each.
pub fn measure(spec: ExtractorSpec, batch: usize, iterations: usize, device: &Device) -> anyhow::Result<Throughput> {
    anyhow::ensure!(batch > 0 && iterations > 0, "--batch and --iterations must be at least 1");
    let autodiff = device.clone().autodiff();
    autodiff.seed(0);
    let mut card = ModelCard::classifier(spec);
    card.classifier = Some(10);
    card.class_names = atd_core::card::CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    let mut model = Model::new(card, &autodiff)?;
    let mut optim = crate::train::sgd(0.9, true, 5e-4);
    let (x, labels) = random_batch(batch, 1, device);

    let mut train_step = |model: &mut Model| {
        let loss = cross_entropy(model.logits(x.clone().autodiff()), &labels).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model.net);
        model.net = optim.step(0.01, model.net.clone(), grads);
        // Reading a parameter back waits for the step to finish on asynchronous backends.
        let _ =
            crate::model::to_vec(model.net.classifier.as_ref().expect("built with a classifier").weight.val().sum());
    };
    let train_seconds = timed(iterations, || train_step(&mut model));

    let attacker = model.valid();
    let objective = |x: Tensor<4>| attacker.cross_entropy(x, &labels);
    let pgd_seconds = timed(iterations, || {
        let _ = crate::model::to_vec(input_gradient(&objective, &x).sum());
    });
    let forward_seconds = timed(iterations, || {
        let _ = crate::model::to_vec(attacker.logits(x.clone()).sum());
    });
    let images = (batch * iterations) as f64;
    Ok(Throughput {
        train_images_per_second: images / train_seconds,
        pgd_image_steps_per_second: images / pgd_seconds,
        forward_images_per_second: images / forward_seconds,
    })
}

/// Seconds for `iterations` calls of `f` after one warm-up call.
fn timed(iterations: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64()
}
