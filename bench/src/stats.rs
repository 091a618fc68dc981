//! Statistics over raw samples: percentiles, moments, Tukey outlier fences, bootstrap confidence intervals
//! of the median, paired-resampling ratios and the two-run comparison test. Every resampling uses a fixed
//! seed so that a results folder re-renders to the same figures.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Seed of every resampling in this crate (fixed so reports are reproducible).
pub const SEED: u64 = 0x5742_4154_4121;
/// Number of bootstrap resamples.
pub const RESAMPLES: usize = 2000;

/// The statistics of one set of samples (all values in the unit of the input, ns in this crate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator).
    pub sd: f64,
    /// Bootstrap 95% confidence interval of the median (percentile method).
    pub median_ci_low: f64,
    pub median_ci_high: f64,
    /// Number of samples outside the Tukey fences (1.5 IQR beyond the quartiles).
    pub outliers: usize,
}

/// Percentile `p` (0..=100) of sorted data by linear interpolation between closest ranks (the
/// "type 7" definition, numpy's default).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = p / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

pub fn median(values: &[f64]) -> f64 {
    percentile_sorted(&sorted(values), 50.0)
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation; 0 for fewer than two values.
pub fn sd(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// Tukey fences (q1 - 1.5 IQR, q3 + 1.5 IQR).
pub fn tukey_fences(values: &[f64]) -> (f64, f64) {
    let s = sorted(values);
    let q1 = percentile_sorted(&s, 25.0);
    let q3 = percentile_sorted(&s, 75.0);
    let iqr = q3 - q1;
    (q1 - 1.5 * iqr, q3 + 1.5 * iqr)
}

/// For each value, whether it lies outside the Tukey fences. Outliers are flagged, never dropped.
pub fn outlier_flags(values: &[f64]) -> Vec<bool> {
    let (lo, hi) = tukey_fences(values);
    values.iter().map(|&v| v < lo || v > hi).collect()
}

fn resample<'a>(rng: &mut StdRng, values: &[f64], buf: &'a mut Vec<f64>) -> &'a mut Vec<f64> {
    buf.clear();
    buf.extend((0..values.len()).map(|_| values[rng.random_range(0..values.len())]));
    buf
}

/// Bootstrap 95% CI of the median (percentile method, fixed seed).
pub fn bootstrap_median_ci(values: &[f64]) -> (f64, f64) {
    if values.len() < 2 {
        let v = values.first().copied().unwrap_or(f64::NAN);
        return (v, v);
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut buf = Vec::with_capacity(values.len());
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| median(resample(&mut rng, values, &mut buf)))
        .collect();
    medians.sort_by(f64::total_cmp);
    (
        percentile_sorted(&medians, 2.5),
        percentile_sorted(&medians, 97.5),
    )
}

pub fn summarize(values: &[f64]) -> Summary {
    let s = sorted(values);
    let (median_ci_low, median_ci_high) = bootstrap_median_ci(values);
    Summary {
        n: values.len(),
        median: percentile_sorted(&s, 50.0),
        p90: percentile_sorted(&s, 90.0),
        p99: percentile_sorted(&s, 99.0),
        min: s.first().copied().unwrap_or(f64::NAN),
        max: s.last().copied().unwrap_or(f64::NAN),
        mean: mean(values),
        sd: sd(values),
        median_ci_low,
        median_ci_high,
        outliers: outlier_flags(values).iter().filter(|&&o| o).count(),
    }
}

/// A ratio of medians with its 95% CI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioEstimate {
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// median(a) / median(b) with a CI from *paired* resampling: samples of the same interleaving round are
/// drawn together, so drift that hit both subjects in a round cancels. Unequal lengths use the common prefix.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> RatioEstimate {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ratio = median(a) / median(b);
    if n < 2 {
        return RatioEstimate {
            ratio,
            ci_low: ratio,
            ci_high: ratio,
        };
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut ra, mut rb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            ra.clear();
            rb.clear();
            for _ in 0..n {
                let i = rng.random_range(0..n);
                ra.push(a[i]);
                rb.push(b[i]);
            }
            median(&ra) / median(&rb)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    RatioEstimate {
        ratio,
        ci_low: percentile_sorted(&ratios, 2.5),
        ci_high: percentile_sorted(&ratios, 97.5),
    }
}

/// The verdict of comparing one metric between two runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Improved,
    Regressed,
    Unchanged,
}

/// Result of [`compare_runs`]: change of the median in percent with a bootstrap CI, and the permutation
/// test's p-value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub base_median: f64,
    pub new_median: f64,
    pub change_pct: f64,
    pub ci_low_pct: f64,
    pub ci_high_pct: f64,
    pub p_value: f64,
    pub verdict: Verdict,
}

/// The decision rule of `compare`: a difference counts only when the permutation test rejects "same
/// distribution" at `alpha` AND the median moved by at least `min_effect` (a fraction, 0.10 = 10%).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRule {
    pub alpha: f64,
    pub min_effect: f64,
}

impl Default for DecisionRule {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            min_effect: 0.10,
        }
    }
}

/// Two independent runs (base, new) of one metric: two-sided permutation test on the difference of
/// medians (fixed seed), bootstrap CI of the relative change of the median, and the verdict under `rule`.
pub fn compare_runs(base: &[f64], new: &[f64], rule: DecisionRule) -> Change {
    let (mb, mn) = (median(base), median(new));
    let change = mn / mb - 1.0;
    let mut rng = StdRng::seed_from_u64(SEED);
    let observed = (mn - mb).abs();
    let mut pooled: Vec<f64> = base.iter().chain(new).copied().collect();
    let mut extreme = 0usize;
    for _ in 0..RESAMPLES {
        // Fisher-Yates shuffle, then split at |base|.
        for i in (1..pooled.len()).rev() {
            pooled.swap(i, rng.random_range(0..=i));
        }
        let (pb, pn) = pooled.split_at(base.len());
        if (median(pn) - median(pb)).abs() >= observed {
            extreme += 1;
        }
    }
    let p_value = (extreme + 1) as f64 / (RESAMPLES + 1) as f64;
    let (mut bb, mut bn) = (Vec::new(), Vec::new());
    let mut changes: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let b = median(resample(&mut rng, base, &mut bb));
            let n = median(resample(&mut rng, new, &mut bn));
            n / b - 1.0
        })
        .collect();
    changes.sort_by(f64::total_cmp);
    let significant = p_value < rule.alpha;
    let verdict = if significant && change >= rule.min_effect {
        Verdict::Regressed
    } else if significant && change <= -rule.min_effect {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    };
    Change {
        base_median: mb,
        new_median: mn,
        change_pct: change * 100.0,
        ci_low_pct: percentile_sorted(&changes, 2.5) * 100.0,
        ci_high_pct: percentile_sorted(&changes, 97.5) * 100.0,
        p_value,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_hand_computed_values() {
        let v = [15.0, 20.0, 35.0, 40.0, 50.0];
        let s = sorted(&v);
        assert_eq!(percentile_sorted(&s, 50.0), 35.0);
        // rank = 0.9 * 4 = 3.6 -> 40 + 0.6 * 10
        assert!((percentile_sorted(&s, 90.0) - 46.0).abs() < 1e-12);
        // rank = 0.99 * 4 = 3.96 -> 40 + 0.96 * 10
        assert!((percentile_sorted(&s, 99.0) - 49.6).abs() < 1e-12);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn moments_match_hand_computed_values() {
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&v), 5.0);
        // sum of squared deviations 32, n - 1 = 7
        assert!((sd(&v) - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        let s = summarize(&v);
        assert_eq!((s.n, s.min, s.max, s.median), (8, 2.0, 9.0, 4.5));
    }

    #[test]
    fn tukey_flags_the_far_value_only() {
        // q1 = 2, q3 = 4 -> fences -1 and 7
        let v = [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 100.0];
        let (lo, hi) = tukey_fences(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!((lo, hi), (-1.0, 7.0));
        let flags = outlier_flags(&v);
        assert_eq!(flags.iter().filter(|&&f| f).count(), 1);
        assert!(flags[7]);
        assert_eq!(summarize(&v).outliers, 1);
    }

    #[test]
    fn bootstrap_ci_brackets_the_median_and_is_degenerate_for_constant_data() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        let (lo, hi) = bootstrap_median_ci(&v);
        assert!(
            lo < 51.0 && hi > 51.0 && lo > 35.0 && hi < 67.0,
            "{lo} {hi}"
        );
        assert_eq!(bootstrap_median_ci(&[3.0; 10]), (3.0, 3.0));
        assert_eq!(
            bootstrap_median_ci(&v),
            (lo, hi),
            "fixed seed must reproduce"
        );
    }

    #[test]
    fn paired_ratio_of_scaled_data_is_exact() {
        let a: Vec<f64> = (1..=30).map(|i| f64::from(i) * 3.0).collect();
        let b: Vec<f64> = (1..=30).map(f64::from).collect();
        let r = paired_ratio(&a, &b);
        // pairs are resampled together, so every resample's ratio is exactly 3
        assert!((r.ratio - 3.0).abs() < 1e-12);
        assert!((r.ci_low - 3.0).abs() < 1e-12 && (r.ci_high - 3.0).abs() < 1e-12);
    }
}
