//! The library of cases. A case prepares, runs one timed iteration, tears down and names the subject it
//! measures; cases that measure the same thing for different subjects form a [`Group`], the unit that the
//! recorder interleaves (A B C A B C …) and the criterion driver turns into a benchmark group. Both drivers
//! call exactly these functions.

pub mod cgroups;
pub mod fs;
pub mod fsserver;
pub mod namespaces;
pub mod rootfs;
pub mod scaling;
pub mod security;
pub mod startup;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The families of issue 5 (and security, of issue 4), one file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Namespaces,
    Cgroups,
    Rootfs,
    Fs,
    Startup,
    Scaling,
    Security,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Namespaces,
        Family::Cgroups,
        Family::Rootfs,
        Family::Fs,
        Family::Startup,
        Family::Scaling,
        Family::Security,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Namespaces => "namespaces",
            Family::Cgroups => "cgroups",
            Family::Rootfs => "rootfs",
            Family::Fs => "fs",
            Family::Startup => "startup",
            Family::Scaling => "scaling",
            Family::Security => "security",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timed iteration: the measured value plus optional named sub-measurements (e.g. strata's phases)
/// and derived metrics (e.g. achieved throughput of a batch).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub value: Duration,
    pub parts: Vec<(String, Duration)>,
    pub metrics: Vec<(String, f64)>,
}

impl From<Duration> for Sample {
    fn from(value: Duration) -> Self {
        Sample {
            value,
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The subject cannot run on this machine; reported as "skipped: reason", never faked.
    #[error("skipped: {0}")]
    Skipped(String),
    /// The subject was expected to work and did not.
    #[error("failed: {0}")]
    Failed(String),
}

impl CaseError {
    pub fn failed(what: impl fmt::Display) -> Self {
        CaseError::Failed(what.to_string())
    }
}

impl From<std::io::Error> for CaseError {
    fn from(e: std::io::Error) -> Self {
        CaseError::Failed(e.to_string())
    }
}

impl From<nix::Error> for CaseError {
    fn from(e: nix::Error) -> Self {
        CaseError::Failed(e.to_string())
    }
}

pub type CaseResult<T> = Result<T, CaseError>;

/// One subject of one measurement.
pub trait Case: Send {
    /// What is measured, e.g. "floor", "crun", "cgroups-rs", "pid".
    fn subject(&self) -> String;
    /// Untimed set-up; `Err(Skipped)` when the subject is missing here.
    fn prepare(&mut self) -> CaseResult<()> {
        Ok(())
    }
    /// One timed iteration (only the work of interest is inside the measured interval).
    fn run_once(&mut self) -> CaseResult<Sample>;
    /// Untimed clean-up; must leave nothing behind.
    fn teardown(&mut self) {}
    /// Pause after each sample so asynchronous kernel work (net namespace and cgroup teardown) of one
    /// sample does not land in the next one.
    fn quiesce(&self) -> Duration {
        Duration::ZERO
    }
}

/// Cases measuring the same thing for different subjects.
pub struct Group {
    pub family: Family,
    /// e.g. "clone/pid" or "start/true".
    pub name: String,
    /// How the figure is measured, for the report.
    pub method: String,
    /// Subjects the ratio tables divide by (e.g. "floor", "strata-kernel").
    pub references: Vec<String>,
    /// Cap on samples for expensive groups (e.g. Docker), whatever the suite asks.
    pub max_samples: Option<usize>,
    pub cases: Vec<Box<dyn Case>>,
}

impl Group {
    pub fn new(family: Family, name: impl Into<String>, method: impl Into<String>) -> Self {
        Group {
            family,
            name: name.into(),
            method: method.into(),
            references: Vec::new(),
            max_samples: None,
            cases: Vec::new(),
        }
    }
    pub fn reference(mut self, subject: &str) -> Self {
        self.references.push(subject.to_string());
        self
    }
    pub fn max_samples(mut self, n: usize) -> Self {
        self.max_samples = Some(n);
        self
    }
    pub fn case(mut self, case: impl Case + 'static) -> Self {
        self.cases.push(Box::new(case));
        self
    }
    pub fn id(&self) -> String {
        format!("{}/{}", self.family, self.name)
    }
    /// Whether `--only PATTERN` selects this group or one of its cases: PATTERN is a prefix of
    /// "family/group/subject" (so `fs` selects the fs family but not rootfs). A comma separates
    /// alternatives: `startup/true/floor,startup/true/strata-kernel`.
    pub fn matches(&self, pattern: &str) -> bool {
        let id = self.id();
        pattern.split(',').any(|p| {
            id.starts_with(p)
                || p.starts_with(&format!("{id}/"))
                    && self
                        .cases
                        .iter()
                        .any(|c| format!("{id}/{}", c.subject()).starts_with(p))
        })
    }
    /// Keep only the cases matching the pattern (all of them when the group id itself matches).
    pub fn retain_matching(&mut self, pattern: &str) {
        let id = self.id();
        if pattern.split(',').any(|p| id.starts_with(p)) {
            return;
        }
        self.cases.retain(|c| {
            let case = format!("{id}/{}", c.subject());
            pattern.split(',').any(|p| case.starts_with(p))
        });
    }
}

/// Which set of cases and how many samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    Quick,
    Standard,
    Full,
}

impl Suite {
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::Quick => "quick",
            Suite::Standard => "standard",
            Suite::Full => "full",
        }
    }
    pub fn default_samples(self) -> usize {
        match self {
            Suite::Quick => 12,
            Suite::Standard => 40,
            Suite::Full => 150,
        }
    }
    pub fn warmup(self) -> usize {
        match self {
            Suite::Quick => 2,
            Suite::Standard => 4,
            Suite::Full => 10,
        }
    }
}

/// Every group of the suite, in run order. Building a group does no work; `prepare` does.
pub fn groups(suite: Suite) -> Vec<Group> {
    let mut all = Vec::new();
    all.extend(namespaces::groups(suite));
    all.extend(cgroups::groups(suite));
    all.extend(rootfs::groups(suite));
    all.extend(fs::groups(suite));
    all.extend(fsserver::groups(suite));
    all.extend(startup::groups(suite));
    all.extend(scaling::groups(suite));
    all.extend(security::groups(suite));
    all
}

/// A name unique on this machine for this process: `strata-bench-<pid>-<counter>-<what>`.
pub fn unique_name(what: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "strata-bench-{}-{}-{what}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(g: &Group) -> Vec<String> {
        g.cases.iter().map(|c| c.subject()).collect()
    }

    #[test]
    fn only_selects_by_prefix_with_comma_separated_alternatives() {
        let clone = || {
            namespaces::groups(Suite::Quick)
                .into_iter()
                .find(|g| g.name == "clone")
                .expect("clone group")
        };
        let all = subjects(&clone());
        assert!(all.len() > 2, "{all:?}");

        for (pattern, want) in [
            ("namespaces/clone/uts", vec!["uts"]),
            (
                "namespaces/clone/uts,namespaces/clone/none",
                vec!["none", "uts"],
            ),
            ("namespaces/", all.iter().map(String::as_str).collect()),
            (
                "nothing,namespaces/clone",
                all.iter().map(String::as_str).collect(),
            ),
        ] {
            let mut g = clone();
            assert!(g.matches(pattern), "{pattern}");
            g.retain_matching(pattern);
            let mut got = subjects(&g);
            got.sort();
            let mut want: Vec<String> = want.into_iter().map(String::from).collect();
            want.sort();
            assert_eq!(got, want, "{pattern}");
        }
        // A prefix, not a substring: "spaces" selects nothing, nor does a subject the group lacks.
        for pattern in ["spaces", "namespaces/clone/nosuch", "startup/true"] {
            assert!(!clone().matches(pattern), "{pattern}");
        }
    }
}
