//! OOD detection metrics. Convention: a higher score means "more in-distribution"; the
//! in-distribution samples are the positives unless a metric says otherwise.

/// The four numbers reported per setting.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OodMetrics {
    pub auroc: f64,
    pub fpr_at_95_tpr: f64,
    pub aupr_in: f64,
    pub aupr_out: f64,
}

impl OodMetrics {
    pub fn compute(in_scores: &[f32], out_scores: &[f32]) -> Self {
        Self {
            auroc: auroc(in_scores, out_scores),
            fpr_at_95_tpr: fpr_at_tpr(in_scores, out_scores, 0.95),
            aupr_in: average_precision(in_scores, out_scores),
            aupr_out: average_precision(&negated(out_scores), &negated(in_scores)),
        }
    }
}

fn negated(s: &[f32]) -> Vec<f32> {
    s.iter().map(|v| -v).collect()
}

fn assert_usable(pos: &[f32], neg: &[f32]) {
    assert!(!pos.is_empty() && !neg.is_empty(), "metrics need at least one sample of each kind");
    assert!(pos.iter().chain(neg).all(|v| !v.is_nan()), "scores must not be NaN");
}

/// Area under the ROC curve: P(s_in > s_out) + P(s_in = s_out) / 2 (Mann-Whitney U).
pub fn auroc(in_scores: &[f32], out_scores: &[f32]) -> f64 {
    assert_usable(in_scores, out_scores);
    let mut all: Vec<(f32, bool)> =
        in_scores.iter().map(|&s| (s, true)).chain(out_scores.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (p, n) = (in_scores.len() as f64, out_scores.len() as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// False-positive rate at the highest threshold whose true-positive rate reaches `tpr`
/// (a sample is called positive when its score is >= the threshold).
pub fn fpr_at_tpr(in_scores: &[f32], out_scores: &[f32], tpr: f64) -> f64 {
    let t = threshold_at_tpr(in_scores, tpr);
    out_scores.iter().filter(|&&s| s >= t).count() as f64 / out_scores.len() as f64
}

/// The highest threshold that keeps at least `tpr` of the in-distribution scores at or above it.
pub fn threshold_at_tpr(in_scores: &[f32], tpr: f64) -> f32 {
    assert!(!in_scores.is_empty() && (0.0..=1.0).contains(&tpr));
    let mut sorted = in_scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let k = ((tpr * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// Average precision with the positives scored `pos` (as scikit-learn's
/// `average_precision_score`): sum over distinct thresholds of (R_k - R_{k-1}) P_k.
pub fn average_precision(pos: &[f32], neg: &[f32]) -> f64 {
    assert_usable(pos, neg);
    let mut all: Vec<(f32, bool)> = pos.iter().map(|&s| (s, true)).chain(neg.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total_pos = pos.len() as f64;
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            j += 1;
        }
        let recall = tp / total_pos;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
        i = j;
    }
    ap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_cases() {
        // Perfect separation, perfect inversion, all tied.
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auroc(&[1.0, 1.0], &[1.0, 1.0, 1.0]), 0.5);
        // in {0.9, 0.5}, out {0.5, 0.1}: pairs (0.9>0.5)(0.9>0.1)(0.5=0.5 -> 1/2)(0.5>0.1) = 3.5/4.
        assert_eq!(auroc(&[0.9, 0.5], &[0.5, 0.1]), 0.875);
        // 20 in scores 1..=20: 95% TPR needs the top 19, threshold 2; out {1.5, 2, 3, 0} -> 2 of 4 at or above.
        let ins: Vec<f32> = (1..=20).map(|v| v as f32).collect();
        assert_eq!(threshold_at_tpr(&ins, 0.95), 2.0);
        assert_eq!(fpr_at_tpr(&ins, &[1.5, 2.0, 3.0, 0.0], 0.95), 0.5);
        // AP: ranking +,-,+ : P@1 = 1 (R 1/2), P@3 = 2/3 (R 1) -> 0.5 + 0.5*2/3.
        assert!(close(average_precision(&[3.0, 1.0], &[2.0]), 0.5 + 1.0 / 3.0));
        // A tie between a positive and a negative at the top counts as one threshold: P = 1/2.
        assert!(close(average_precision(&[1.0], &[1.0]), 0.5));
    }

    #[test]
    fn matches_scikit_learn() {
        // Values computed with scikit-learn 1.9.1 (roc_auc_score, roc_curve, average_precision_score)
        // on these exact inputs, OOD as the negative class for AUROC/AUPR-In and as the positive
        // class (scores negated) for AUPR-Out.
        let ins = [0.9f32, 0.8, 0.8, 0.7, 0.55, 0.5, 0.4, 0.3, 0.3, 0.95];
        let outs = [0.1f32, 0.4, 0.35, 0.8, 0.2, 0.3, 0.6, 0.05];
        let m = OodMetrics::compute(&ins, &outs);
        assert!(close(m.auroc, 0.78125), "{m:?}");
        assert!(close(m.fpr_at_95_tpr, 0.625), "{m:?}");
        assert!((m.aupr_in - 0.802_171_717_171_717_1).abs() < 1e-9, "{m:?}");
        assert!((m.aupr_out - 0.766_369_047_619_047_7).abs() < 1e-9, "{m:?}");

        // Many ties (integer scores), within and across the two sets.
        let ins = [1f32, 1., 2., 2., 2., 3., 3., 0., 5., 5., 5., 5., 4., 4., 2., 2., 1., 3., 3., 3.];
        let outs = [0f32, 0., 1., 1., 2., 2., 2., 3., 0., 1., 5., 0.];
        let m = OodMetrics::compute(&ins, &outs);
        assert!(close(m.auroc, 0.75625), "{m:?}");
        assert!(close(m.fpr_at_95_tpr, 2.0 / 3.0), "{m:?}");
        assert!((m.aupr_in - 0.784_534_493_284_493_2).abs() < 1e-9, "{m:?}");
        assert!((m.aupr_out - 0.625_253_189_792_663_4).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn invariant_to_monotone_transforms() {
        let ins = [0.2f32, 0.9, 0.4, 0.7];
        let outs = [0.1f32, 0.5, 0.3];
        let logit = |s: &[f32]| s.iter().map(|p| (p / (1.0 - p)).ln()).collect::<Vec<_>>();
        let a = OodMetrics::compute(&ins, &outs);
        let b = OodMetrics::compute(&logit(&ins), &logit(&outs));
        assert_eq!(a, b);
    }
}
