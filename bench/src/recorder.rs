//! The CLI's recorder: prepares every case of a group, runs warm-up rounds that are not counted, then
//! interleaves the subjects round by round (A B C A B C …) so drift hits all alike, keeps every raw
//! sample, and computes the statistics and the ratio tables.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cases::{CaseError, Group};
use crate::report::json::{CaseRecord, GroupResult, RatioRecord, SampleRecord, Status};
use crate::stats;

/// How many samples of each case, and how many uncounted warm-up rounds.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub samples: usize,
    pub warmup: usize,
}

impl Plan {
    pub fn for_group(self, g: &Group) -> Plan {
        let cap = g.max_samples.unwrap_or(usize::MAX);
        Plan {
            samples: self.samples.min(cap).max(2),
            warmup: self.warmup.min(cap),
        }
    }
}

/// Progress on a terminal (bar with ETA) or plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(total_rounds: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total_rounds);
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {pos}/{len} ETA {eta} {msg}",
                )
                .expect("static template"),
            );
            b
        });
        Progress { bar }
    }
    pub fn hidden() -> Self {
        Progress { bar: None }
    }
    fn start_group(&self, id: &str) {
        match &self.bar {
            Some(b) => b.set_message(id.to_string()),
            None => eprintln!("strata-bench: {id}"),
        }
    }
    fn round(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("strata-bench: {text}"),
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

struct Slot {
    status: Status,
    reason: Option<String>,
    samples: Vec<SampleRecord>,
}

/// Run one group under `plan` and return its results (skips and failures included, with reasons).
pub fn run_group(group: &mut Group, plan: Plan, progress: &Progress) -> GroupResult {
    // Untimed, before anything of the group: dirty data an earlier group left (tar-extract writes
    // hundreds of MB) would otherwise be written back during this group's first samples and slow
    // whatever touches the disk then (in one standard run mount-first-stat, right after
    // tar-extract, was ~30% slower for every FUSE subject than in reruns of it alone).
    nix::unistd::sync();
    let started = Instant::now();
    let plan = plan.for_group(group);
    let id = group.id();
    progress.start_group(&id);
    let mut slots: Vec<Slot> = group
        .cases
        .iter_mut()
        .map(|case| {
            let (status, reason) = match case.prepare() {
                Ok(()) => (Status::Ok, None),
                Err(CaseError::Skipped(r)) => (Status::Skipped, Some(r)),
                Err(CaseError::Failed(r)) => (Status::Failed, Some(format!("prepare: {r}"))),
            };
            Slot {
                status,
                reason,
                samples: Vec::new(),
            }
        })
        .collect();
    // Over warm-up and samples only: preparing (an image load, a fixture tree) is not what they saw.
    let before = crate::conditions::Snapshot::take();
    for round in 0..plan.warmup + plan.samples {
        for (case, slot) in group.cases.iter_mut().zip(&mut slots) {
            if slot.status != Status::Ok {
                continue;
            }
            match case.run_once() {
                Ok(s) if round >= plan.warmup => slot.samples.push(SampleRecord {
                    round: round - plan.warmup,
                    value_ns: s.value.as_nanos() as u64,
                    outlier: false,
                    parts_ns: s
                        .parts
                        .iter()
                        .map(|(k, d)| (k.clone(), d.as_nanos() as u64))
                        .collect(),
                    metrics: s.metrics.into_iter().collect(),
                }),
                Ok(_) => {}
                Err(e) => {
                    slot.status = if matches!(e, CaseError::Skipped(_)) {
                        Status::Skipped
                    } else {
                        Status::Failed
                    };
                    slot.reason = Some(format!("round {round}: {e}"));
                    progress.line(&format!("{id}/{}: {e}", case.subject()));
                }
            }
            let q = case.quiesce();
            if !q.is_zero() {
                std::thread::sleep(q);
            }
        }
        progress.round();
    }
    let conditions = before.until(&crate::conditions::Snapshot::take());
    for case in &mut group.cases {
        case.teardown();
    }
    let cases: Vec<CaseRecord> = group
        .cases
        .iter()
        .zip(slots)
        .map(|(case, slot)| finish_case(case.subject(), slot))
        .collect();
    let ratios = ratio_table(&cases, &group.references);
    GroupResult {
        family: group.family,
        name: group.name.clone(),
        method: group.method.clone(),
        unit: "ns".into(),
        references: group.references.clone(),
        duration_s: started.elapsed().as_secs_f64(),
        cases,
        ratios,
        conditions,
    }
}

fn finish_case(subject: String, mut slot: Slot) -> CaseRecord {
    let values: Vec<f64> = slot.samples.iter().map(|s| s.value_ns as f64).collect();
    for (s, flag) in slot.samples.iter_mut().zip(stats::outlier_flags(&values)) {
        s.outlier = flag;
    }
    // A case that failed after some samples keeps them (and its failure reason); one with none has no stats.
    let summary = (!values.is_empty()).then(|| stats::summarize(&values));
    let mut parts: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut metrics: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in &slot.samples {
        for (k, v) in &s.parts_ns {
            parts.entry(k.clone()).or_default().push(*v as f64);
        }
        for (k, v) in &s.metrics {
            metrics.entry(k.clone()).or_default().push(*v);
        }
    }
    CaseRecord {
        subject,
        status: slot.status,
        reason: slot.reason,
        samples: slot.samples,
        summary,
        parts: parts
            .into_iter()
            .map(|(k, v)| (k, stats::summarize(&v)))
            .collect(),
        metrics: metrics
            .into_iter()
            .map(|(k, v)| (k, stats::summarize(&v)))
            .collect(),
    }
}

/// subject ÷ reference for every subject with samples and every reference with samples, paired by round.
pub fn ratio_table(cases: &[CaseRecord], references: &[String]) -> Vec<RatioRecord> {
    let mut out = Vec::new();
    for reference in references {
        let Some(r) = cases
            .iter()
            .find(|c| &c.subject == reference && !c.samples.is_empty())
        else {
            continue;
        };
        for c in cases
            .iter()
            .filter(|c| &c.subject != reference && !c.samples.is_empty())
        {
            let (a, b) = paired_values(c, r);
            out.push(RatioRecord {
                subject: c.subject.clone(),
                reference: reference.clone(),
                estimate: stats::paired_ratio(&a, &b),
            });
        }
    }
    out
}

/// Values of two cases from the rounds both have, in round order.
fn paired_values(a: &CaseRecord, b: &CaseRecord) -> (Vec<f64>, Vec<f64>) {
    let by_round: BTreeMap<usize, u64> = b.samples.iter().map(|s| (s.round, s.value_ns)).collect();
    a.samples
        .iter()
        .filter_map(|s| {
            by_round
                .get(&s.round)
                .map(|&v| (s.value_ns as f64, v as f64))
        })
        .unzip()
}

/// Time `f` once.
pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

/// Options of one `strata-bench run`.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    pub suite: crate::cases::Suite,
    pub only: Option<String>,
    pub samples: Option<usize>,
    pub command_line: Vec<String>,
}

/// Errors of a suite run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error(
        "--only {pattern:?} selects no case of the {0} suite (see strata-bench list --suite {0})",
        .suite.as_str()
    )]
    NothingSelected {
        pattern: String,
        suite: crate::cases::Suite,
    },
}

/// Run every selected group of the suite and assemble the results (metadata included).
pub fn run_suite(opts: &SuiteOptions) -> Result<crate::report::json::Results, SuiteError> {
    use crate::report::json::{Results, RunOptions, SCHEMA_ID, SCHEMA_VERSION};
    let started = std::time::SystemTime::now();
    let t = Instant::now();
    let plan = Plan {
        samples: opts.samples.unwrap_or(opts.suite.default_samples()),
        warmup: opts.suite.warmup(),
    };
    let mut groups = crate::cases::groups(opts.suite);
    if let Some(p) = &opts.only {
        groups.retain(|g| g.matches(p));
        for g in &mut groups {
            g.retain_matching(p);
        }
        if groups.is_empty() {
            return Err(SuiteError::NothingSelected {
                pattern: p.clone(),
                suite: opts.suite,
            });
        }
    }
    let machine = crate::meta::collect();
    let total: u64 = groups
        .iter()
        .map(|g| (plan.for_group(g).samples + plan.for_group(g).warmup) as u64)
        .sum();
    let progress = Progress::new(total);
    let results: Vec<GroupResult> = groups
        .iter_mut()
        .map(|g| run_group(g, plan, &progress))
        .collect();
    progress.finish();
    drop(groups);
    crate::cases::fs::release_fixture();
    crate::subjects::cleanup();
    Ok(Results {
        schema: SCHEMA_ID.into(),
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started_unix: started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        duration_s: t.elapsed().as_secs_f64(),
        options: RunOptions {
            suite: opts.suite,
            samples: plan.samples,
            warmup: plan.warmup,
            only: opts.only.clone(),
            command_line: opts.command_line.clone(),
        },
        machine,
        groups: results,
    })
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn utc_date(unix: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// results/<date>-<host>-<suite>
pub fn default_out_dir(r: &crate::report::json::Results) -> std::path::PathBuf {
    std::path::Path::new("results").join(format!(
        "{}-{}-{}",
        utc_date(r.started_unix),
        r.machine.hostname,
        r.options.suite.as_str()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_date_of_known_instants() {
        assert_eq!(super::utc_date(0), "1970-01-01");
        assert_eq!(super::utc_date(951_782_400), "2000-02-29");
        assert_eq!(super::utc_date(1_796_083_200), "2026-12-01");
    }
}
