//! OOD detector scores, all differentiable end to end so they can be attacked. Higher means
//! more in-distribution. `score_logit` is an unbounded, strictly increasing transform of the
//! reported `score` (the logit of a probability, the log of a softmax probability, ...): the
//! attacks differentiate it, so a saturated sigmoid or softmax never hides the gradient, and
//! sign(gradient) is the same as for the score itself wherever the latter is non-zero.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, sigmoid};

use crate::model::Model;

pub use atd_core::attack::Detector;

/// log(sum(exp(x))) along dim 1 of `[B, C]`, numerically stable.
fn log_sum_exp(x: Tensor<2>) -> Tensor<1> {
    let b = x.dims()[0];
    let m = x.clone().max_dim(1).detach();
    ((x - m.clone()).exp().sum_dim(1).log() + m).reshape([b])
}

/// Per-sample cross-entropy of `[B, C]` logits against integer labels.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [b, c] = logits.dims();
    assert_eq!(labels.len(), b, "one label per sample");
    let one_hot: Vec<f32> = labels.iter().flat_map(|&y| (0..c).map(move |k| if k == y { 1.0 } else { 0.0 })).collect();
    let one_hot = crate::model::tensor_from(one_hot, [b, c], &logits.device());
    log_sum_exp(logits.clone()) - (logits * one_hot).sum_dim(1).reshape([b])
}

impl Model {
    /// The detectors this file can compute.
    pub fn detectors(&self) -> Vec<Detector> {
        let n = &self.net;
        let mahalanobis = n.baselines.as_ref().is_some_and(|b| b.mahalanobis.is_some());
        let outlier_class = self.card.outlier_class;
        Detector::ALL
            .into_iter()
            .filter(|d| match d {
                Detector::Atd => n.discriminator.is_some(),
                Detector::Msp => self.card.has_msp(),
                Detector::OutlierClass => n.classifier.is_some() && outlier_class,
                Detector::Md | Detector::Rmd => mahalanobis,
                Detector::Openmax => n.baselines.as_ref().is_some_and(|b| b.openmax.is_some()),
            })
            .collect()
    }

    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        self.net.extractor.forward(x)
    }

    /// Classifier logits `[B, C]`; panics without a classifier head (check `card.classifier`).
    pub fn logits_from_features(&self, features: Tensor<2>) -> Tensor<2> {
        self.net.classifier.as_ref().expect("model has a classifier head").forward(features)
    }

    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.logits_from_features(self.features(x))
    }

    /// Per-sample softmax cross-entropy of the classifier head: the objective of
    /// classification attacks (and of adversarial training).
    pub fn cross_entropy(&self, x: Tensor<4>, labels: &[usize]) -> Tensor<1> {
        cross_entropy(self.logits(x), labels)
    }

    /// The unbounded score that attacks differentiate (see the module docs).
    pub fn score_logit(&self, detector: Detector, x: Tensor<4>) -> Tensor<1> {
        self.score_logit_from_features(detector, self.features(x))
    }

    pub fn score_logit_from_features(&self, detector: Detector, f: Tensor<2>) -> Tensor<1> {
        let b = f.dims()[0];
        match detector {
            Detector::Atd => self.net.discriminator.as_ref().expect("model has a discriminator").forward(f),
            Detector::Msp => log_softmax(self.logits_from_features(f), 1).max_dim(1).reshape([b]),
            Detector::Md => self.class_distances(f).min_dim(1).reshape([b]).neg(),
            Detector::Rmd => {
                let background = self.background_distance(f.clone());
                (self.class_distances(f).min_dim(1).reshape([b]) - background).neg()
            }
            Detector::Openmax => self.openmax_known_log_prob(f),
            Detector::OutlierClass => {
                // log(1 - p_outlier): the in-distribution classes' share of the softmax.
                let logits = self.logits_from_features(f);
                let known = logits.dims()[1] - 1;
                log_sum_exp(logits.clone().narrow(1, 0, known)) - log_sum_exp(logits)
            }
        }
    }

    /// The reported score: a probability for ATD, MSP and OpenMax, a negated distance for MD/RMD.
    pub fn score(&self, detector: Detector, x: Tensor<4>) -> Tensor<1> {
        self.score_from_features(detector, self.features(x))
    }

    pub fn score_from_features(&self, detector: Detector, f: Tensor<2>) -> Tensor<1> {
        let z = self.score_logit_from_features(detector, f);
        match detector {
            Detector::Atd => sigmoid(z),
            Detector::Msp | Detector::Openmax | Detector::OutlierClass => z.exp(),
            Detector::Md | Detector::Rmd => z,
        }
    }

    /// Squared Mahalanobis distance of each feature to each class mean, `[B, C]`.
    fn class_distances(&self, f: Tensor<2>) -> Tensor<2> {
        let m = self.net.baselines.as_ref().and_then(|b| b.mahalanobis.as_ref()).expect("Mahalanobis statistics");
        let means = m.class_means.val();
        let [b, feat] = f.dims();
        let c = means.dims()[0];
        let diff = f.unsqueeze_dim::<3>(1) - means.unsqueeze_dim::<3>(0); // [B, C, F]
        let projected = diff.clone().reshape([b * c, feat]).matmul(m.class_precision.val()).reshape([b, c, feat]);
        (projected * diff).sum_dim(2).reshape([b, c])
    }

    fn background_distance(&self, f: Tensor<2>) -> Tensor<1> {
        let m = self.net.baselines.as_ref().and_then(|b| b.mahalanobis.as_ref()).expect("Mahalanobis statistics");
        let b = f.dims()[0];
        let diff = f - m.background_mean.val().unsqueeze_dim::<2>(0);
        (diff.clone().matmul(m.background_precision.val()) * diff).sum_dim(1).reshape([b])
    }

    /// OpenMax (Bendale and Boult 2016): the top `alpha_rank` classes' logits are scaled down by
    /// their Weibull outlier probability, the removed mass forms an "unknown" logit; returns
    /// log(1 - P(unknown)).
    fn openmax_known_log_prob(&self, f: Tensor<2>) -> Tensor<1> {
        let om = self.net.baselines.as_ref().and_then(|b| b.openmax.as_ref()).expect("OpenMax statistics");
        let v = self.logits_from_features(f);
        let [b, c] = v.dims();
        let mav = om.mav.val();
        let dist =
            (v.clone().unsqueeze_dim::<3>(1) - mav.unsqueeze_dim::<3>(0)).powf_scalar(2.0).sum_dim(2).reshape([b, c]);
        let dist = (dist + 1e-12).sqrt();
        let weibull = om.weibull.val();
        let shape = weibull.clone().narrow(1, 0, 1).reshape([1, c]);
        let scale = weibull.clone().narrow(1, 1, 1).reshape([1, c]);
        let loc = weibull.narrow(1, 2, 1).reshape([1, c]);
        let z = ((dist - loc) / scale).clamp_min(1e-12);
        let cdf = (z.log() * shape).exp().neg().exp().neg() + 1.0;
        // Rank of each class among the sample's logits (0 = largest); ranks are constants.
        let ranks = v.clone().detach().argsort_descending(1).argsort(1).float();
        let alpha = om.alpha_rank.min(c) as f32;
        let rank_weight = ((ranks.neg() + alpha) / alpha).clamp_min(0.0);
        let w = (rank_weight * cdf).neg() + 1.0;
        let revised = v.clone() * w.clone();
        let unknown = (v * (w.neg() + 1.0)).sum_dim(1);
        log_sum_exp(revised.clone()) - log_sum_exp(Tensor::cat(vec![unknown, revised], 1))
    }
}
