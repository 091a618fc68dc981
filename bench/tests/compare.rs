//! `compare` flags a synthetic 25% slowdown and stays silent on two draws from one distribution.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_bench::stats::{DecisionRule, Verdict, compare_runs};

/// Log-normal draws around `median_ns` (Box-Muller), like startup latencies with a right tail.
fn draws(seed: u64, n: usize, median_ns: f64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            median_ns * (0.15 * z).exp()
        })
        .collect()
}

#[test]
fn a_25_percent_slowdown_is_a_regression() {
    let base = draws(1, 40, 2_000_000.0);
    let new: Vec<f64> = draws(2, 40, 2_000_000.0).iter().map(|v| v * 1.25).collect();
    let c = compare_runs(&base, &new, DecisionRule::default());
    assert_eq!(c.verdict, Verdict::Regressed, "{c:?}");
    assert!(c.change_pct > 15.0 && c.change_pct < 35.0, "{c:?}");
    assert!(c.ci_low_pct > 0.0, "{c:?}");
}

#[test]
fn a_25_percent_speedup_is_an_improvement() {
    let base = draws(3, 40, 2_000_000.0);
    let new: Vec<f64> = draws(4, 40, 2_000_000.0).iter().map(|v| v * 0.75).collect();
    assert_eq!(
        compare_runs(&base, &new, DecisionRule::default()).verdict,
        Verdict::Improved
    );
}

#[test]
fn two_draws_from_one_distribution_are_unchanged() {
    for seed in 0..10u64 {
        let base = draws(100 + 2 * seed, 40, 2_000_000.0);
        let new = draws(101 + 2 * seed, 40, 2_000_000.0);
        let c = compare_runs(&base, &new, DecisionRule::default());
        assert_eq!(c.verdict, Verdict::Unchanged, "seed {seed}: {c:?}");
    }
}

#[test]
fn a_significant_but_small_change_stays_below_the_minimum_effect() {
    // 3% shift with very little noise: the test rejects, the effect rule keeps it "unchanged".
    let base: Vec<f64> = (0..50).map(|i| 1000.0 + f64::from(i % 5)).collect();
    let new: Vec<f64> = base.iter().map(|v| v * 1.03).collect();
    let c = compare_runs(&base, &new, DecisionRule::default());
    assert!(c.p_value < 0.01, "{c:?}");
    assert_eq!(c.verdict, Verdict::Unchanged);
}

#[test]
fn docker_in_older_results_is_compared_with_docker_runc() {
    // A committed run from before the rename, and the same run with its docker subject under the new name.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../results/2026-12-01-ignored-standard-2");
    let mut base = strata_bench::report::json::Results::read(&dir).expect("committed results read");
    base.groups.retain(|g| g.id() == "startup/true");
    let mut new = base.clone();
    let startup = new
        .groups
        .iter_mut()
        .find(|g| g.id() == "startup/true")
        .expect("startup/true");
    let docker = startup
        .cases
        .iter_mut()
        .find(|c| c.subject == "docker")
        .expect("the old run has a docker subject");
    docker.subject = "docker-runc".into();
    let cmp = strata_bench::compare::compare(&base, &new, DecisionRule::default());
    let m = cmp
        .changes
        .iter()
        .find(|m| m.metric == "startup/true/docker-runc")
        .unwrap_or_else(|| panic!("docker-runc not compared; unmatched: {:?}", cmp.unmatched));
    assert_eq!(m.change.verdict, Verdict::Unchanged, "{m:?}");
    assert!(cmp.unmatched.is_empty(), "{:?}", cmp.unmatched);
}
