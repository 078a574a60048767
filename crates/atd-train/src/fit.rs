//! Fitting the statistics of the distance-based baselines from training features
//! (plain f64 arithmetic: the matrices are feature-sized, F <= 512).

/// Mahalanobis statistics: class means, the precision of the shared (tied) covariance, and the
/// mean and precision of one class-agnostic background Gaussian (for the relative variant).
pub struct MahalanobisFit {
    pub class_means: Vec<f32>,
    pub class_precision: Vec<f32>,
    pub background_mean: Vec<f32>,
    pub background_precision: Vec<f32>,
}

/// `features` is `[N, F]` row-major; `labels` in 0..classes. A small ridge keeps the covariance
/// invertible when N is small relative to F.
pub fn fit_mahalanobis(
    features: &[f32],
    labels: &[usize],
    classes: usize,
    dim: usize,
) -> anyhow::Result<MahalanobisFit> {
    let n = labels.len();
    anyhow::ensure!(features.len() == n * dim, "features and labels disagree on the sample count");
    let mut means = vec![0f64; classes * dim];
    let mut counts = vec![0usize; classes];
    for (row, &y) in features.chunks_exact(dim).zip(labels) {
        counts[y] += 1;
        for (m, &v) in means[y * dim..(y + 1) * dim].iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    for (c, &count) in counts.iter().enumerate() {
        anyhow::ensure!(count > 0, "class {c} has no training sample; cannot fit its mean");
        means[c * dim..(c + 1) * dim].iter_mut().for_each(|m| *m /= count as f64);
    }
    let background_mean: Vec<f64> =
        (0..dim).map(|j| features.iter().skip(j).step_by(dim).map(|&v| v as f64).sum::<f64>() / n as f64).collect();
    let mut class_cov = vec![0f64; dim * dim];
    let mut background_cov = vec![0f64; dim * dim];
    for (row, &y) in features.chunks_exact(dim).zip(labels) {
        let centred: Vec<f64> = row.iter().zip(&means[y * dim..]).map(|(&v, m)| v as f64 - m).collect();
        let centred_bg: Vec<f64> = row.iter().zip(&background_mean).map(|(&v, m)| v as f64 - m).collect();
        for i in 0..dim {
            for j in 0..dim {
                class_cov[i * dim + j] += centred[i] * centred[j];
                background_cov[i * dim + j] += centred_bg[i] * centred_bg[j];
            }
        }
    }
    let finish = |cov: &mut [f64]| -> anyhow::Result<Vec<f32>> {
        cov.iter_mut().for_each(|v| *v /= n as f64);
        let ridge = 1e-6 * (0..dim).map(|i| cov[i * dim + i]).sum::<f64>() / dim as f64 + 1e-9;
        (0..dim).for_each(|i| cov[i * dim + i] += ridge);
        Ok(invert_spd(cov, dim)?.into_iter().map(|v| v as f32).collect())
    };
    Ok(MahalanobisFit {
        class_means: means.iter().map(|&v| v as f32).collect(),
        class_precision: finish(&mut class_cov)?,
        background_mean: background_mean.iter().map(|&v| v as f32).collect(),
        background_precision: finish(&mut background_cov)?,
    })
}

/// Inverse of a symmetric positive definite matrix through its Cholesky factor.
pub fn invert_spd(a: &[f64], n: usize) -> anyhow::Result<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                anyhow::ensure!(s > 0.0, "covariance is not positive definite (pivot {i})");
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    // Solve L L^T X = I column by column.
    let mut inv = vec![0f64; n * n];
    for col in 0..n {
        let mut y = vec![0f64; n];
        for i in 0..n {
            let rhs = if i == col { 1.0 } else { 0.0 };
            y[i] = (rhs - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
        }
        for i in (0..n).rev() {
            let v = (y[i] - (i + 1..n).map(|k| l[k * n + i] * inv[k * n + col]).sum::<f64>()) / l[i * n + i];
            inv[i * n + col] = v;
        }
    }
    Ok(inv)
}

/// OpenMax statistics: per class, the mean logit vector (MAV) of the correctly classified
/// training samples, and a Weibull fit (shape, scale, location) to the `tail_size` largest
/// distances to it. Location is set just below the smallest tail distance (as libMR's FitHigh
/// translates the tail), shape and scale by maximum likelihood.
pub fn fit_openmax(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    tail_size: usize,
) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let rows: Vec<&[f32]> = logits.chunks_exact(classes).collect();
    let argmax = |r: &[f32]| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap();
    let mut mav = vec![0f32; classes * classes];
    let mut weibull = vec![0f32; classes * 3];
    for c in 0..classes {
        let of_class = || rows.iter().zip(labels).filter(|(_, y)| **y == c);
        let mut members: Vec<&[f32]> = of_class().filter(|(r, _)| argmax(r) == c).map(|(r, _)| *r).collect();
        if members.len() < 2 {
            // A weak classifier (early training, tests): fall back to every sample of the class.
            members = of_class().map(|(r, _)| *r).collect();
        }
        anyhow::ensure!(members.len() >= 2, "class {c} has fewer than 2 samples; cannot fit OpenMax");
        let mean: Vec<f32> =
            (0..classes).map(|j| members.iter().map(|r| r[j]).sum::<f32>() / members.len() as f32).collect();
        let mut dists: Vec<f64> = members
            .iter()
            .map(|r| r.iter().zip(&mean).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt())
            .collect();
        dists.sort_by(|a, b| b.total_cmp(a));
        dists.truncate(tail_size.max(2));
        let loc = dists.last().unwrap() * 0.999;
        let shifted: Vec<f64> = dists.iter().map(|d| (d - loc).max(1e-9)).collect();
        let (shape, scale) = weibull_mle(&shifted);
        mav[c * classes..(c + 1) * classes].copy_from_slice(&mean);
        weibull[c * 3..c * 3 + 3].copy_from_slice(&[shape as f32, scale as f32, loc as f32]);
    }
    Ok((mav, weibull))
}

/// Maximum-likelihood Weibull (shape k, scale lambda) by Newton's method on the profile equation
/// 1/k + mean(ln x) - sum(x^k ln x) / sum(x^k) = 0.
pub fn weibull_mle(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean_log = x.iter().map(|v| v.ln()).sum::<f64>() / n;
    let mut k = 1.0f64;
    for _ in 0..100 {
        let (mut s0, mut s1, mut s2) = (0.0, 0.0, 0.0);
        for &v in x {
            let p = v.powf(k);
            let l = v.ln();
            s0 += p;
            s1 += p * l;
            s2 += p * l * l;
        }
        let f = 1.0 / k + mean_log - s1 / s0;
        let df = -1.0 / (k * k) - (s2 * s0 - s1 * s1) / (s0 * s0);
        // Bounded steps, and a bounded shape: identical tail values (tiny classes) would send
        // the shape to infinity.
        let step = k - f / df;
        let next = if step.is_finite() { step.clamp(k / 10.0, k * 10.0).clamp(1e-3, 1e3) } else { k };
        if (next - k).abs() < 1e-10 * k {
            k = next;
            break;
        }
        k = next;
    }
    let scale = (x.iter().map(|v| v.powf(k)).sum::<f64>() / n).powf(1.0 / k);
    (k, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_a_known_matrix() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let inv = invert_spd(&a, 2).unwrap();
        let expected = [3.0 / 8.0, -2.0 / 8.0, -2.0 / 8.0, 4.0 / 8.0];
        assert!(inv.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12), "{inv:?}");
        assert!(invert_spd(&[1.0, 2.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn weibull_fit_recovers_parameters() {
        // Quantiles of Weibull(k=2, lambda=3): x = lambda * (-ln(1-u))^(1/k).
        let x: Vec<f64> = (1..2000).map(|i| 3.0 * (-(1.0 - i as f64 / 2000.0f64).ln()).powf(0.5)).collect();
        let (k, l) = weibull_mle(&x);
        assert!((k - 2.0).abs() < 0.05 && (l - 3.0).abs() < 0.05, "k={k} lambda={l}");
    }

    #[test]
    fn mahalanobis_fit_on_two_clusters() {
        // Class 0 around (0,0), class 1 around (10,0), spread +-1 on each axis.
        let pts = [
            (-1.0, -1.0, 0),
            (1.0, 1.0, 0),
            (-1.0, 1.0, 0),
            (1.0, -1.0, 0),
            (9.0, -1.0, 1),
            (11.0, 1.0, 1),
            (9.0, 1.0, 1),
            (11.0, -1.0, 1),
        ];
        let features: Vec<f32> = pts.iter().flat_map(|p| [p.0, p.1]).collect();
        let labels: Vec<usize> = pts.iter().map(|p| p.2).collect();
        let fit = fit_mahalanobis(&features, &labels, 2, 2).unwrap();
        assert_eq!(fit.class_means, vec![0.0, 0.0, 10.0, 0.0]);
        // Shared covariance is the identity, so the precision is ~ the identity too.
        assert!((fit.class_precision[0] - 1.0).abs() < 1e-4 && fit.class_precision[1].abs() < 1e-6);
        assert_eq!(fit.background_mean, vec![5.0, 0.0]);
        assert!((fit.background_precision[0] - 1.0 / 26.0).abs() < 1e-4, "{:?}", fit.background_precision);
    }
}
