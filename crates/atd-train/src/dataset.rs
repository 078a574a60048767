//! Training and evaluation data: where the data pack lives, reading a set by name, seeded
//! splits, and batches as tensors with the usual CIFAR augmentation (random crop with 4-pixel
//! zero padding, horizontal flip), all driven by our own RNG so runs are reproducible.

use std::path::{Path, PathBuf};

use atd_core::data::{ImageSet, LabelBytes, read_cifar_bin, read_image_folder};
use atd_core::{IMAGE_SIZE, IMAGE_VALUES};
use burn::tensor::{Device, Tensor};

use crate::model::tensor_from;
use crate::rng::Rng;

/// The data pack: `--data-dir`, else `$ATD_DATA`, else `../shared/data`.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    match (flag, std::env::var_os("ATD_DATA")) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(env)) => PathBuf::from(env),
        (None, None) => PathBuf::from("../shared/data"),
    }
}

/// Read a set by file name inside the data pack (or by a path of its own): CIFAR-style `.bin`
/// records, or an ImageFolder tree as a folder or `.zip`.
pub fn load_set(data_dir: &Path, name: &str) -> anyhow::Result<ImageSet> {
    let path = if Path::new(name).is_absolute() || Path::new(name).exists() {
        PathBuf::from(name)
    } else {
        data_dir.join(name)
    };
    anyhow::ensure!(
        path.exists(),
        "data set {} not found (set --data-dir or ATD_DATA to the data pack folder)",
        path.display()
    );
    let set = if path.extension().is_some_and(|e| e == "bin") {
        read_cifar_bin(&path, LabelBytes::One)?
    } else {
        let bar = crate::progress::bar(0, &format!("decoding {}", path.display()));
        let set = read_image_folder(&path, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        set
    };
    anyhow::ensure!(!set.is_empty(), "{} holds no images", path.display());
    Ok(set)
}

/// A seeded split of `0..n` into (train, validation) indices.
pub fn split(n: usize, val_size: usize, seed: u64) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    anyhow::ensure!(val_size < n, "validation split of {val_size} leaves no training images out of {n}");
    let mut all: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0x5EED_5B11).shuffle(&mut all);
    let train = all.split_off(val_size);
    Ok((train, all))
}

/// The order of the training images in `epoch`: a permutation that depends on the seed and the
/// epoch only, so a resumed run sees exactly the batches an uninterrupted one would.
pub fn epoch_order(indices: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = indices.to_vec();
    Rng::new(seed.wrapping_mul(0x9E37_79B9).wrapping_add(epoch as u64)).shuffle(&mut order);
    order
}

/// Images `idx` of `set` as a `[B, 3, 32, 32]` tensor in [0,1]; with `augment`, each image gets a
/// random 32x32 crop of its 4-pixel zero-padded version and a random horizontal flip.
pub fn images(set: &ImageSet, idx: &[usize], augment: Option<&mut Rng>, device: &Device) -> Tensor<4> {
    let s = IMAGE_SIZE as isize;
    let mut values = Vec::with_capacity(idx.len() * IMAGE_VALUES);
    let mut augment = augment;
    for &i in idx {
        let image = set.image(i);
        let (dx, dy, flip) = match augment.as_deref_mut() {
            Some(rng) => (rng.below(9) as isize - 4, rng.below(9) as isize - 4, rng.below(2) == 1),
            None => (0, 0, false),
        };
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    let sx = if flip { s - 1 - x } else { x } + dx;
                    let sy = y + dy;
                    let v = if (0..s).contains(&sx) && (0..s).contains(&sy) {
                        image[(c * s * s + sy * s + sx) as usize] as f32 / 255.0
                    } else {
                        0.0
                    };
                    values.push(v);
                }
            }
        }
    }
    tensor_from(values, [idx.len(), 3, IMAGE_SIZE, IMAGE_SIZE], device)
}

pub fn labels(set: &ImageSet, idx: &[usize]) -> Vec<usize> {
    idx.iter().map(|&i| set.labels[i] as usize).collect()
}

/// Consecutive batches of `order`; the last one may be short.
pub fn batches(order: &[usize], batch_size: usize) -> impl Iterator<Item = &[usize]> {
    order.chunks(batch_size.max(1))
}
