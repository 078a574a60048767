//! The paper's two-dimensional example (Fig. 4): a fixed closed (in) set, a fixed open (out)
//! set, generated points resampled every epoch, and an MLP discriminator trained with L-inf PGD
//! (eps 1) on none, one or two of the three sets. Attacking the closed set widens the margin
//! around it; `margin` measures that with a number.

use std::path::Path;

use atd_core::attack::Direction;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{leaky_relu, softplus};
use burn::tensor::{Device, Tensor};

use crate::model::{tensor_from, to_vec};
use crate::rng::Rng;

/// The plane shown and sampled: [-EXTENT, EXTENT]^2.
pub const EXTENT: f32 = 6.0;
const EPS: f32 = 1.0;
const ALPHA: f32 = 0.5;

/// Which sets are attacked during training: the panels (b) to (f) of the paper's Fig. 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub closed: bool,
    pub open: bool,
    pub generated: bool,
}

pub const SETTINGS: [Setting; 5] = [
    Setting { name: "b-standard", closed: false, open: false, generated: false },
    Setting { name: "c-attack-closed", closed: true, open: false, generated: false },
    Setting { name: "d-attack-open", closed: false, open: true, generated: false },
    Setting { name: "e-attack-generated", closed: false, open: false, generated: true },
    Setting { name: "f-attack-closed-and-open-atd", closed: true, open: true, generated: false },
];

/// Points as (x, y) pairs.
pub struct ToyData {
    pub closed: Vec<[f32; 2]>,
    pub open: Vec<[f32; 2]>,
}

impl ToyData {
    /// The closed set: two Gaussian blobs on the left and in the middle; the open set: a blob
    /// on the right, close to the middle one.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut blob = |cx: f32, cy: f32, sd: f32, n: usize| -> Vec<[f32; 2]> {
            (0..n).map(|_| [cx + sd * rng.normal(), cy + sd * rng.normal()]).collect()
        };
        let mut closed = blob(-2.5, 1.5, 0.45, 100);
        closed.extend(blob(0.0, -1.5, 0.45, 100));
        let open = blob(2.5, -1.0, 0.45, 100);
        Self { closed, open }
    }
}

#[derive(Module, Debug)]
pub struct ToyDiscriminator {
    layers: Vec<Linear>,
}

impl ToyDiscriminator {
    fn new(device: &Device) -> Self {
        let widths = [2, 64, 64, 64, 1];
        Self { layers: widths.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect() }
    }

    /// `[N, 2]` points to `[N]` logits (higher = in).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        let n = x.dims()[0];
        let last = self.layers.len() - 1;
        let mut out = x;
        for (i, layer) in self.layers.iter().enumerate() {
            out = layer.forward(out);
            if i < last {
                out = leaky_relu(out, 0.2);
            }
        }
        out.reshape([n])
    }
}

fn points(p: &[[f32; 2]], device: &Device) -> Tensor<2> {
    tensor_from(p.iter().flatten().copied().collect(), [p.len(), 2], device)
}

/// L-inf PGD in the plane (10 steps of 2.5 eps / 10), pushing the logit `direction`.
fn attack(d: &ToyDiscriminator, x: Tensor<2>, direction: Direction, rng: &mut Rng) -> Tensor<2> {
    let device = x.device();
    let dims = x.dims();
    let noise: Vec<f32> = (0..dims[0] * 2).map(|_| (2.0 * rng.uniform() - 1.0) * EPS).collect();
    let mut adv = x.clone() + tensor_from(noise, dims, &device);
    for _ in 0..10 {
        let leaf = adv.clone().detach().autodiff().require_grad();
        let objective = d.forward(leaf.clone()) * direction.sign();
        let g = leaf.grad(&objective.sum().backward()).expect("depends on the input").detach();
        adv = (adv + g.sign() * (2.5 * EPS / 10.0)).max_pair(x.clone() - EPS).min_pair(x.clone() + EPS);
    }
    adv
}

/// Train the discriminator of `setting` (full batch, Adam) and return it in eval form.
pub fn train(data: &ToyData, setting: Setting, epochs: usize, seed: u64) -> ToyDiscriminator {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let mut d = ToyDiscriminator::new(&device);
    let mut optim = AdamConfig::new().init();
    let mut rng = Rng::new(seed ^ 0x70F);
    let plain = Device::flex();
    let (closed, open) = (points(&data.closed, &plain), points(&data.open, &plain));
    for _ in 0..epochs {
        let generated: Vec<[f32; 2]> =
            (0..200).map(|_| [EXTENT * (2.0 * rng.uniform() - 1.0), EXTENT * (2.0 * rng.uniform() - 1.0)]).collect();
        let generated = points(&generated, &plain);
        let judge = d.valid();
        let closed =
            if setting.closed { attack(&judge, closed.clone(), Direction::Out, &mut rng) } else { closed.clone() };
        let open = if setting.open { attack(&judge, open.clone(), Direction::In, &mut rng) } else { open.clone() };
        let generated = if setting.generated { attack(&judge, generated, Direction::In, &mut rng) } else { generated };
        let loss = softplus(d.forward(closed.autodiff()).neg(), 1.0).mean()
            + softplus(d.forward(open.autodiff()), 1.0).mean() * ALPHA
            + softplus(d.forward(generated.autodiff()), 1.0).mean() * (1.0 - ALPHA);
        let grads = GradientsParams::from_grads(loss.backward(), &d);
        d = optim.step(5e-3, d, grads);
    }
    d.valid()
}

/// The discriminator's verdict (true = in) on a `side` x `side` grid over the plane, row-major
/// from the top-left corner.
pub fn decision_grid(d: &ToyDiscriminator, side: usize) -> Vec<bool> {
    let coord = |i: usize| -EXTENT + 2.0 * EXTENT * i as f32 / (side - 1) as f32;
    let grid: Vec<[f32; 2]> = (0..side).flat_map(|row| (0..side).map(move |col| [coord(col), -coord(row)])).collect();
    to_vec(d.forward(points(&grid, &Device::flex()))).into_iter().map(|z| z > 0.0).collect()
}

/// Mean distance from each point of `set` to the nearest grid cell classified the other way
/// (`set_is_in` says which verdict the set should get): the margin around the set.
pub fn margin(grid: &[bool], side: usize, set: &[[f32; 2]], set_is_in: bool) -> f32 {
    let coord = |i: usize| -EXTENT + 2.0 * EXTENT * i as f32 / (side - 1) as f32;
    let wrong: Vec<[f32; 2]> =
        (0..side * side).filter(|&k| grid[k] != set_is_in).map(|k| [coord(k % side), -coord(k / side)]).collect();
    if wrong.is_empty() {
        return 2.0 * EXTENT;
    }
    let total: f32 = set
        .iter()
        .map(|p| {
            wrong.iter().map(|q| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()).fold(f32::INFINITY, f32::min)
        })
        .sum();
    total / set.len() as f32
}

/// Draw the decision map (blue = in, orange = out) with the closed (dark blue) and open
/// (dark orange) points as a PNG.
pub fn draw(grid: &[bool], side: usize, data: &ToyData, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let px = 480u32;
    let mut buffer = vec![0u8; (px * px * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (px, px)).into_drawing_area();
        let to_px = |v: f32| ((v + EXTENT) / (2.0 * EXTENT) * (px - 1) as f32) as i32;
        let cell = px as f32 / side as f32;
        let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing: {e:?}");
        for (k, &is_in) in grid.iter().enumerate() {
            let (row, col) = ((k / side) as f32, (k % side) as f32);
            let colour = if is_in { RGBColor(198, 219, 239) } else { RGBColor(253, 208, 162) };
            let rect = [
                ((col * cell) as i32, (row * cell) as i32),
                (((col + 1.0) * cell).ceil() as i32, ((row + 1.0) * cell).ceil() as i32),
            ];
            root.draw(&Rectangle::new(rect, colour.filled())).map_err(err)?;
        }
        for (set, colour) in [(&data.closed, RGBColor(31, 119, 180)), (&data.open, RGBColor(230, 85, 13))] {
            for p in set {
                root.draw(&Circle::new((to_px(p[0]), to_px(-p[1])), 3, colour.filled())).map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    let image = image::RgbImage::from_raw(px, px, buffer).expect("buffer of the right size");
    image.save(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// `atd toy --out <dir>`: the five panels and their margins.
pub fn run(out: &Path, epochs: usize, seed: u64) -> anyhow::Result<Vec<(Setting, f32, f32)>> {
    std::fs::create_dir_all(out)?;
    let data = ToyData::new(seed);
    let side = 121;
    let bar = crate::progress::bar(SETTINGS.len() as u64, "toy settings");
    let mut rows = Vec::new();
    for setting in SETTINGS {
        let d = train(&data, setting, epochs, seed);
        let grid = decision_grid(&d, side);
        draw(&grid, side, &data, &out.join(format!("toy-{}.png", setting.name)))?;
        rows.push((setting, margin(&grid, side, &data.closed, true), margin(&grid, side, &data.open, false)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(rows)
}
