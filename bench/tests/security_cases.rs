//! The security family's in-process groups run for real: each child installs its layout's filters (the
//! samples fail unless mount_setattr then gets EPERM exactly when a filter is installed, and getppid
//! succeeds), and the figures carry the programs' lengths.

use strata_bench::cases::{Family, Suite, security};
use strata_bench::recorder::{Plan, Progress, run_group};
use strata_bench::report::json::{GroupResult, Status};

fn run(name: &str) -> GroupResult {
    let mut g = security::groups(Suite::Quick)
        .into_iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no group {name}"));
    assert_eq!(g.family, Family::Security);
    run_group(
        &mut g,
        Plan {
            samples: 3,
            warmup: 1,
        },
        &Progress::hidden(),
    )
}

fn metric(g: &GroupResult, subject: &str, name: &str) -> f64 {
    let c = g
        .case(subject)
        .unwrap_or_else(|| panic!("{}: no {subject}", g.id()));
    assert_eq!(c.status, Status::Ok, "{}/{subject}: {:?}", g.id(), c.reason);
    assert_eq!(c.samples.len(), 3);
    c.metrics
        .get(name)
        .unwrap_or_else(|| panic!("{}/{subject} has no {name}", g.id()))
        .median
}

#[test]
fn install_and_syscall_groups_install_real_filters() {
    for name in ["seccomp-install", "seccomp-getppid", "seccomp-refused"] {
        let g = run(name);
        let len = |s| metric(&g, s, "bpf_instructions");
        assert_eq!(len("none"), 0.0);
        assert!(len("strata-tree") > 0.0);
        assert!(
            len("linear-chain") > 3.0 * len("strata-tree"),
            "the chain is the longer layout"
        );
        if name != "seccomp-install" {
            for s in ["none", "strata-tree", "linear-chain"] {
                assert!(metric(&g, s, "ns_per_call") > 0.0, "{name}/{s}");
            }
        }
        assert!(
            g.ratios
                .iter()
                .any(|r| r.subject == "linear-chain" && r.reference == "strata-tree")
        );
    }
}

#[test]
fn compile_group_times_all_three_compilers() {
    let g = run("seccomp-compile");
    let tree = metric(&g, "strata-tree", "bpf_instructions");
    assert_eq!(metric(&g, "strata-tree-cached", "bpf_instructions"), tree);
    assert!(metric(&g, "linear-chain", "bpf_instructions") > tree);
}
