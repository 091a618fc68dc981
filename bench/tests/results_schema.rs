//! results.json round-trips through its schema and the typed model; missing fields are rejected.

use strata_bench::cases::{Family, Group, Suite, namespaces};
use strata_bench::recorder::{Plan, Progress, run_group};
use strata_bench::report::json::{self, Results, RunOptions, SCHEMA_ID, SCHEMA_VERSION, Status};

fn small_results() -> Results {
    // Two real namespace subjects, a few samples: enough to fill every field.
    let mut g: Group = namespaces::groups(Suite::Quick)
        .into_iter()
        .find(|g| g.name == "clone")
        .expect("clone group");
    g.retain_matching("namespaces/clone/uts");
    let mut none = namespaces::groups(Suite::Quick)
        .into_iter()
        .find(|g| g.name == "clone")
        .expect("clone group");
    none.retain_matching("namespaces/clone/none");
    g.cases.extend(none.cases);
    let result = run_group(
        &mut g,
        Plan {
            samples: 5,
            warmup: 1,
        },
        &Progress::hidden(),
    );
    Results {
        schema: SCHEMA_ID.into(),
        schema_version: SCHEMA_VERSION,
        tool_version: "test".into(),
        started_unix: 1,
        duration_s: 0.5,
        options: RunOptions {
            suite: Suite::Quick,
            samples: 5,
            warmup: 1,
            only: None,
            command_line: vec!["t".into()],
        },
        machine: strata_bench::meta::collect(),
        groups: vec![result],
    }
}

#[test]
fn results_json_validates_and_round_trips() {
    let r = small_results();
    assert_eq!(r.groups[0].family, Family::Namespaces);
    let c = &r.groups[0].cases;
    assert!(
        c.iter()
            .all(|c| c.status == Status::Ok && c.samples.len() == 5),
        "{c:?}"
    );
    assert_eq!(r.groups[0].ratios.len(), 1, "uts ÷ none");
    let dir = tempfile::tempdir().expect("tempdir");
    r.write(dir.path()).expect("write");
    assert!(dir.path().join("results.schema.json").is_file());
    let back = Results::read(dir.path()).expect("read validates");
    // Raw samples (integers) and every label round-trip exactly; statistics to float precision.
    assert_eq!(back.machine, r.machine);
    assert_eq!(back.options, r.options);
    let (g, bg) = (&r.groups[0], &back.groups[0]);
    assert_eq!(
        (bg.id(), &bg.method, &bg.references),
        (g.id(), &g.method, &g.references)
    );
    for (c, bc) in g.cases.iter().zip(&bg.cases) {
        assert_eq!(
            (&bc.subject, bc.status, &bc.samples),
            (&c.subject, c.status, &c.samples)
        );
        let (s, bs) = (
            c.summary.as_ref().expect("summary"),
            bc.summary.as_ref().expect("summary"),
        );
        for (a, b) in [
            (s.median, bs.median),
            (s.sd, bs.sd),
            (s.median_ci_low, bs.median_ci_low),
            (s.p99, bs.p99),
        ] {
            assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
    let (ra, rb) = (&g.ratios[0].estimate, &bg.ratios[0].estimate);
    assert!((ra.ratio - rb.ratio).abs() < 1e-9 && (ra.ci_low - rb.ci_low).abs() < 1e-9);
}

#[test]
fn schema_rejects_missing_and_mistyped_fields() {
    let r = small_results();
    let good = serde_json::to_value(&r).expect("to value");
    json::validate(&good).expect("valid");

    let mut v = good.clone();
    v["machine"]
        .as_object_mut()
        .expect("object")
        .remove("kernel_release");
    let e = json::validate(&v).expect_err("missing kernel_release");
    assert!(e.contains("kernel_release"), "{e}");

    let mut v = good.clone();
    v["groups"][0]["cases"][0]["samples"][0]["value_ns"] = serde_json::json!("fast");
    let e = json::validate(&v).expect_err("mistyped value_ns");
    assert!(e.contains("value_ns"), "{e}");

    let mut v = good;
    v["groups"][0]["cases"][0]["status"] = serde_json::json!("great");
    assert!(json::validate(&v).is_err());
}
