//! The default seccomp filter (issue 4): what installing it costs in a fresh process, what it adds to each
//! syscall afterwards, what compiling it costs (uncached and cached), and what it adds to a whole
//! `strata run`. Two layouts of the same rules are compared: strata's search tree and the linear chain
//! seccompiler builds (the layout strata used before), against no filter at all.

use std::time::Instant;

use strata_runtime::security::{self, CapsHashSet};

use super::startup::{StartupCase, StrataVariant};
use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite};
use crate::subjects::{self, IMAGE};
use crate::sys::{self, CloneStack, Probe, SeccompFilter, SeccompTiming};

/// Calls per sample of the per-syscall groups.
pub const CALLS: u32 = 10_000;

/// Which filter a case installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// No filter (no_new_privs only).
    None,
    /// strata's default filter: the search tree of `seccomp_programs` for Docker's default capabilities.
    Tree,
    /// The same rules as seccompiler's linear chain (two programs: the deny-list and clone3).
    Chain,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::None, Layout::Tree, Layout::Chain];
    pub fn name(self) -> &'static str {
        match self {
            Layout::None => "none",
            Layout::Tree => "strata-tree",
            Layout::Chain => "linear-chain",
        }
    }
    /// The programs, in installation order, in the kernel's layout.
    pub fn filters(self) -> CaseResult<Vec<SeccompFilter>> {
        let keep = security::default_caps();
        let programs = match self {
            Layout::None => return Ok(Vec::new()),
            Layout::Tree => security::seccomp_programs(&keep).map(|p| p.as_ref().clone()),
            Layout::Chain => security::chain::programs(&keep),
        }
        .map_err(CaseError::failed)?;
        Ok(programs
            .iter()
            .map(|p| SeccompFilter::new(p.iter().map(|i| (i.code, i.jt, i.jf, i.k))))
            .collect())
    }
}

fn seccomp_available() -> CaseResult<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        Ok(())
    } else {
        Err(CaseError::Skipped("kernel without seccomp".into()))
    }
}

/// What a sample of a [`ChildCase`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// no_new_privs plus installing the filter.
    Install,
    /// The probe's calls after installing.
    Calls,
}

/// A fresh child installs the layout's filters and then makes the probe's calls (see
/// [`sys::time_seccomp`]); every sample also checks that the filter answered the probe as it should.
struct ChildCase {
    layout: Layout,
    measure: Measure,
    probe: Probe,
    /// Whether the filters refuse the probe (mount_setattr) or allow it (getppid).
    refused: bool,
    filters: Vec<SeccompFilter>,
    stack: CloneStack,
}

impl ChildCase {
    fn new(layout: Layout, measure: Measure, probe: Probe, refused: bool) -> Self {
        ChildCase {
            layout,
            measure,
            probe,
            refused,
            filters: Vec::new(),
            stack: CloneStack::default(),
        }
    }

    /// The probe must have got EPERM exactly when a filter is installed (mount_setattr), or succeeded
    /// (getppid).
    fn check(&self, t: &SeccompTiming) -> CaseResult<()> {
        let filtered = self.layout != Layout::None;
        let ok = if self.refused {
            (t.last_errno == libc::EPERM) == filtered
        } else {
            t.last_errno == 0
        };
        if ok {
            Ok(())
        } else {
            Err(CaseError::failed(format!(
                "{}: the probe call got errno {} ({} filter installed)",
                self.layout.name(),
                t.last_errno,
                if filtered { "a" } else { "no" }
            )))
        }
    }
}

impl Case for ChildCase {
    fn subject(&self) -> String {
        self.layout.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        seccomp_available()?;
        self.filters = self.layout.filters()?;
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let t = sys::time_seccomp(&mut self.stack, &self.filters, self.probe)
            .map_err(CaseError::failed)?;
        self.check(&t)?;
        let instructions = self.filters.iter().map(SeccompFilter::len).sum::<usize>();
        let mut metrics = vec![("bpf_instructions".to_string(), instructions as f64)];
        let value = match self.measure {
            Measure::Install => t.install,
            Measure::Calls => {
                let per_call = t.calls.as_nanos() as f64 / f64::from(self.probe.count());
                metrics.push(("ns_per_call".to_string(), per_call));
                t.calls
            }
        };
        Ok(Sample {
            value,
            parts: Vec::new(),
            metrics,
        })
    }
}

/// Compiling the default filter in-process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compile {
    /// `security::compile`: the tree, compiled on every call.
    Tree,
    /// `security::seccomp_programs` for the default set: what every start after the first in one
    /// process pays (the comparison of the capability set and the clone of an Arc).
    TreeCached,
    /// seccompiler's chain, compiled on every call.
    Chain,
}

struct CompileCase {
    what: Compile,
    keep: CapsHashSet,
}

impl Case for CompileCase {
    fn subject(&self) -> String {
        match self.what {
            Compile::Tree => "strata-tree",
            Compile::TreeCached => "strata-tree-cached",
            Compile::Chain => "linear-chain",
        }
        .into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        // Fills the cache, so every timed call of the cached subject is a hit.
        security::seccomp_programs(&self.keep).map_err(CaseError::failed)?;
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let t = Instant::now();
        let instructions: usize = match self.what {
            Compile::Tree => security::compile(&self.keep).map(|p| p.iter().map(Vec::len).sum()),
            Compile::TreeCached => {
                security::seccomp_programs(&self.keep).map(|p| p.iter().map(Vec::len).sum())
            }
            Compile::Chain => {
                security::chain::programs(&self.keep).map(|p| p.iter().map(Vec::len).sum())
            }
        }
        .map_err(CaseError::failed)?;
        let value = t.elapsed();
        Ok(Sample {
            value,
            parts: Vec::new(),
            metrics: vec![("bpf_instructions".to_string(), instructions as f64)],
        })
    }
}

/// seccomp-start's subject: strata's default filter, or none (`--security-opt seccomp=unconfined`); its
/// container's /proc/self/status must show Seccomp: 2 or 0.
fn seccomp_variant(unconfined: bool) -> StrataVariant {
    let want = if unconfined { "0" } else { "2" };
    StrataVariant {
        subject: if unconfined {
            "strata-kernel-unconfined"
        } else {
            "strata-kernel"
        },
        extra: if unconfined {
            &["--security-opt", "seccomp=unconfined"]
        } else {
            &[]
        },
        check: &["/bin/cat", "/proc/self/status"],
        expect: Box::new(move |status| {
            let mode = status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(str::trim))
                .ok_or("no Seccomp: line in the container's /proc/self/status")?;
            (mode == want)
                .then_some(())
                .ok_or_else(|| format!("the container's seccomp mode is {mode}, expected {want}"))
        }),
    }
}

const LAYOUTS: &str = "strata-tree is strata's default filter (security::seccomp_programs for Docker's \
    default capabilities: one search-tree program); linear-chain is the same rules as seccompiler lays them \
    out, one comparison per syscall number in turn (security::chain: the deny-list program plus a second \
    one answering clone3 with ENOSYS, the layout strata used before); none installs nothing.";

pub fn groups(_suite: Suite) -> Vec<Group> {
    let mut install = Group::new(
        Family::Security,
        "seccomp-install",
        format!(
            "In a fresh single-threaded child of the bench: prctl(PR_SET_NO_NEW_PRIVS) and seccomp(2) \
             SET_MODE_FILTER of each program, timed together inside the child with CLOCK_MONOTONIC (the \
             child's creation and exit are not counted). The kernel runs a new filter for every syscall \
             number of the native and compat architectures at installation to fill its action cache. \
             {LAYOUTS} Every sample then checks that mount_setattr is refused with EPERM exactly when a \
             filter is installed. Metric bpf_instructions: the programs' total length."
        ),
    )
    .reference("none")
    .reference("strata-tree");
    for l in Layout::ALL {
        install = install.case(ChildCase::new(
            l,
            Measure::Install,
            Probe::mount_setattr(1),
            true,
        ));
    }

    let calls = |name: &str, probe: fn(u32) -> Probe, refused: bool, what: &str| {
        let mut g = Group::new(
            Family::Security,
            name,
            format!(
                "In a fresh child, after no_new_privs and installing the layout's filter (not counted), \
                 {CALLS} raw {what} calls timed with CLOCK_MONOTONIC; the value is the whole batch and \
                 metric ns_per_call the batch divided by {CALLS}. {LAYOUTS}"
            ),
        )
        .reference("none")
        .reference("strata-tree");
        for l in Layout::ALL {
            g = g.case(ChildCase::new(l, Measure::Calls, probe(CALLS), refused));
        }
        g
    };
    let getppid = calls(
        "seccomp-getppid",
        Probe::getppid,
        false,
        "getppid(2) (allowed by both filters, whose allow verdict the kernel caches per syscall number, \
         so the filter itself does not run; each call must succeed)",
    );
    let refused = calls(
        "seccomp-refused",
        Probe::mount_setattr,
        true,
        "mount_setattr(-1, NULL, 0, NULL, 0) (refused with EPERM by both filters: the kernel caches \
         only allow verdicts, so it runs every installed filter on each call, and mount_setattr is the \
         highest number of the deny-list, the chain's last comparison; without a filter the kernel \
         answers EINVAL at once; every sample checks that errno)",
    );

    let keep = security::default_caps();
    let mut compile = Group::new(
        Family::Security,
        "seccomp-compile",
        "Compiling the default filter for Docker's default capabilities in the bench process, one call \
         per sample timed with Instant: strata-tree is security::compile (the search tree, uncached), \
         strata-tree-cached is security::seccomp_programs after its first call (what each later start of \
         one strata process pays), linear-chain is security::chain::programs (seccompiler). Metric \
         bpf_instructions: the programs' total length.",
    )
    .reference("strata-tree");
    for what in [Compile::Tree, Compile::TreeCached, Compile::Chain] {
        compile = compile.case(CompileCase {
            what,
            keep: keep.clone(),
        });
    }

    let start = Group::new(
        Family::Security,
        "seccomp-start",
        format!(
            "End to end: `strata run --image {IMAGE} --fs kernel --rm --memory 256m --cpus 1 --pids 512 -- \
             /bin/true` as the startup/true group's strata-kernel subject runs it, with strata's default \
             filter (strata-kernel) and with `--security-opt seccomp=unconfined` (no filter). Before it is \
             measured each subject's container reads its own /proc/self/status, which must show Seccomp: 2 \
             and 0 respectively. 15 ms quiesce after each sample (netns teardown is asynchronous). {} {}",
            subjects::RUN_DIR_METHOD,
            crate::page_cache::METHOD
        ),
    )
    .reference("strata-kernel")
    .case(StartupCase::from(seccomp_variant(false)))
    .case(StartupCase::from(seccomp_variant(true)));

    vec![install, getppid, refused, compile, start]
}
