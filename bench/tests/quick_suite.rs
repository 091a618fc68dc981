//! `strata-bench run --suite quick` produces a complete results folder, with crun, runc, Docker and podman
//! (each with runc, crun and strata) measured
//! (they are prerequisites on CI: a missing one fails this test naming it).

use std::process::Command;

use strata_bench::report::json::{Results, Status};

fn require(tool: &str, args: &[&str]) {
    let ok = Command::new(tool)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "prerequisite missing: `{tool} {}` failed (install it / start it: scripts/setup)",
        args.join(" ")
    );
}

#[test]
fn quick_suite_writes_a_complete_folder() {
    require("crun", &["--version"]);
    require("runc", &["--version"]);
    require("docker", &["info"]);
    require("podman", &["--version"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let status = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .args(["run", "--suite", "quick", "--out"])
        .arg(&out)
        .status()
        .expect("spawn strata-bench");
    assert!(status.success(), "strata-bench run exited with {status}");
    for f in [
        "results.json",
        "results.schema.json",
        "samples.csv",
        "report.md",
        "plots/startup-cdf.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let r = Results::read(&out).expect("results.json validates");
    for family in ["namespaces", "cgroups", "startup", "scaling"] {
        assert!(
            r.groups.iter().any(|g| g.family.as_str() == family),
            "no {family} groups"
        );
    }
    let startup = r
        .groups
        .iter()
        .find(|g| g.id() == "startup/true")
        .expect("startup/true");
    for subject in [
        "floor",
        "floor-exec",
        "crun",
        "runc",
        "docker-runc",
        "docker-crun",
        "docker-strata",
        "podman-runc",
        "podman-crun",
        "podman-strata",
    ] {
        let c = startup
            .case(subject)
            .unwrap_or_else(|| panic!("{subject} missing"));
        assert_eq!(c.status, Status::Ok, "{subject}: {:?}", c.reason);
        assert!(
            c.summary
                .as_ref()
                .is_some_and(|s| s.n >= 2 && s.median > 0.0),
            "{subject} has no statistics"
        );
    }
    assert!(
        startup.ratios.iter().any(|x| x.subject == "docker-runc"
            && x.reference == "floor"
            && x.estimate.ratio > 1.0)
    );
    // Every case is accounted for: measured, or skipped/failed with a reason.
    for g in &r.groups {
        for c in &g.cases {
            assert!(
                c.status == Status::Ok || c.reason.is_some(),
                "{}/{} has no reason",
                g.id(),
                c.subject
            );
        }
    }
    let csv = std::fs::read_to_string(out.join("samples.csv")).expect("csv");
    let rows = csv.lines().count() - 1;
    let samples: usize = r
        .groups
        .iter()
        .flat_map(|g| &g.cases)
        .map(|c| c.samples.len())
        .sum();
    assert_eq!(rows, samples, "one csv row per sample");
    let plots = std::fs::read_dir(out.join("plots")).expect("plots").count();
    assert!(plots > 10, "only {plots} plots");
    let report = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(report.contains("## Startup of /bin/true") && report.contains("## Machine"));
    // Re-rendering from results.json works and compare of a run with itself finds no regression.
    let st = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .arg("report")
        .arg(&out)
        .status()
        .expect("report");
    assert!(st.success());
    let st = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .arg("compare")
        .arg(&out)
        .arg(&out)
        .status()
        .expect("compare");
    assert_eq!(st.code(), Some(0));
    assert!(out.join("comparison.md").is_file());
}
