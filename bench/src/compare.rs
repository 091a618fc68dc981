//! `strata-bench compare BASE NEW`: per metric (group × subject) the change of the median in percent with a
//! bootstrap CI, a permutation test, and a verdict under a stated decision rule; writes comparison.md.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::conditions::Conditions;
use crate::report::fmt_ns;
use crate::report::json::{JsonError, Results};
use crate::stats::{self, Change, DecisionRule, Verdict};

#[derive(Debug, Serialize)]
pub struct MetricChange {
    pub metric: String,
    #[serde(flatten)]
    pub change: Change,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub rule: DecisionRule,
    pub changes: Vec<MetricChange>,
    /// Metrics present in only one of the runs (or without samples in one).
    pub unmatched: Vec<String>,
    /// What each machine did during each group both runs have, where recorded: a regression measured
    /// while the host was busier (steal, CPU pressure) may be the host's, not the code's.
    pub conditions: Vec<GroupConditions>,
}

#[derive(Debug, Serialize)]
pub struct GroupConditions {
    pub group: String,
    pub base: Option<Conditions>,
    pub new: Option<Conditions>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.change.verdict == Verdict::Regressed)
    }
}

/// Compare every metric of `new` with the same metric of `base`.
pub fn compare(base: &Results, new: &Results, rule: DecisionRule) -> Comparison {
    let mut changes = Vec::new();
    let mut unmatched = Vec::new();
    for g in &new.groups {
        for c in &g.cases {
            let metric = format!("{}/{}", g.id(), c.subject);
            // A renamed subject is compared with its old name in older results (docker → docker-runc).
            let b = base
                .groups
                .iter()
                .find(|bg| bg.id() == g.id())
                .and_then(|bg| {
                    bg.case(&c.subject).or_else(|| {
                        crate::subjects::Subject::legacy_name(&c.subject)
                            .and_then(|old| bg.case(old))
                    })
                });
            match b {
                Some(b) if b.samples.len() >= 2 && c.samples.len() >= 2 => {
                    changes.push(MetricChange {
                        metric,
                        change: stats::compare_runs(&b.values(), &c.values(), rule),
                    })
                }
                _ => unmatched.push(metric),
            }
        }
    }
    let conditions = new
        .groups
        .iter()
        .filter_map(|g| {
            let b = base.groups.iter().find(|bg| bg.id() == g.id())?;
            (b.conditions.is_some() || g.conditions.is_some()).then(|| GroupConditions {
                group: g.id(),
                base: b.conditions.clone(),
                new: g.conditions.clone(),
            })
        })
        .collect();
    Comparison {
        rule,
        changes,
        unmatched,
        conditions,
    }
}

pub fn render_markdown(base: &Path, new: &Path, cmp: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# strata-bench comparison\n\nbase: `{}`  \nnew: `{}`\n",
        base.display(),
        new.display()
    );
    let _ = writeln!(
        out,
        "Decision rule: a metric regressed (improved) when a two-sided permutation test on the difference of \
         medians ({} permutations, fixed seed) gives p < {} AND the median grew (shrank) by at least {:.0}%. The CI \
         of the change is a 95% bootstrap interval of median(new)/median(base) − 1 from independent resampling.\n",
        stats::RESAMPLES,
        cmp.rule.alpha,
        cmp.rule.min_effect * 100.0
    );
    let _ = writeln!(
        out,
        "| metric | base median | new median | change | 95% CI | p | verdict |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---|");
    for m in &cmp.changes {
        let c = &m.change;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:+.1}% | {:+.1}% – {:+.1}% | {:.4} | {:?} |",
            m.metric,
            fmt_ns(c.base_median),
            fmt_ns(c.new_median),
            c.change_pct,
            c.ci_low_pct,
            c.ci_high_pct,
            c.p_value,
            c.verdict
        );
    }
    if !cmp.conditions.is_empty() {
        let _ = writeln!(
            out,
            "\nThe machine during each group, base → new (steal and iowait as shares of all CPU time, CPU \
             pressure as the share of time some task waited for a CPU; a change measured while the host was \
             busier may be the host's):\n\n| group | steal | iowait | CPU pressure | load average |\n|---|---|---|---|---|"
        );
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}%"));
        let num = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        for g in &cmp.conditions {
            let (b, n) = (g.base.as_ref(), g.new.as_ref());
            let _ = writeln!(
                out,
                "| {} | {} → {} | {} → {} | {} → {} | {} → {} |",
                g.group,
                pct(b.map(|c| c.steal_pct)),
                pct(n.map(|c| c.steal_pct)),
                pct(b.map(|c| c.iowait_pct)),
                pct(n.map(|c| c.iowait_pct)),
                pct(b.and_then(|c| c.cpu_pressure_pct)),
                pct(n.and_then(|c| c.cpu_pressure_pct)),
                num(b.and_then(|c| c.load_start)),
                num(n.and_then(|c| c.load_start)),
            );
        }
    }
    if !cmp.unmatched.is_empty() {
        let _ = writeln!(
            out,
            "\nNot compared (missing or without samples in one run): {}",
            cmp.unmatched.join(", ")
        );
    }
    out
}

/// Read both folders, compare, write `new/comparison.md` (and .json); returns the comparison.
pub fn compare_dirs(base: &Path, new: &Path, rule: DecisionRule) -> Result<Comparison, JsonError> {
    let (b, n) = (Results::read(base)?, Results::read(new)?);
    let cmp = compare(&b, &n, rule);
    let md = render_markdown(base, new, &cmp);
    let write = |name: &str, text: String| {
        let path = new.join(name);
        std::fs::write(&path, text).map_err(|source| JsonError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    write("comparison.md", md)?;
    write(
        "comparison.json",
        serde_json::to_string_pretty(&cmp).expect("comparison serializes"),
    )?;
    Ok(cmp)
}
