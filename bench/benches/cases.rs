//! The criterion driver: the same cases as the CLI (`strata_bench::cases`), one criterion group per case
//! group, `iter_custom` (the cases time themselves: work in child processes), `SamplingMode::Flat`.
//! `cargo bench -p strata-bench -- PATTERN` prepares only the cases whose id contains PATTERN;
//! `--save-baseline` / `--baseline` work as usual.

use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use strata_bench::cases::{self, Suite};

/// The first free argument, as criterion's filter (substring of "family/group/subject").
fn filter() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" | "--test" | "--list" | "--exact" | "--quiet" | "--verbose" | "--noplot"
            | "--discard-baseline" => {}
            a if a.starts_with("--") => {
                // Options with a value.
                if !a.contains('=') {
                    args.next();
                }
            }
            a => return Some(a.to_string()),
        }
    }
    None
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let filter = filter();
    for mut g in cases::groups(Suite::Quick) {
        let id = g.id();
        let mut group = c.benchmark_group(&id);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500));
        for case in g.cases.iter_mut() {
            let full = format!("{id}/{}", case.subject());
            if filter.as_ref().is_some_and(|f| !full.contains(f.as_str())) {
                continue;
            }
            if let Err(e) = case.prepare().and_then(|()| case.run_once().map(drop)) {
                eprintln!("{full}: {e}");
                case.teardown();
                continue;
            }
            let quiesce = case.quiesce();
            group.bench_function(case.subject(), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        match case.run_once() {
                            Ok(s) => total += s.value,
                            Err(e) => panic!("{full}: {e}"),
                        }
                        std::thread::sleep(quiesce);
                    }
                    total
                })
            });
            case.teardown();
        }
        group.finish();
    }
    strata_bench::cases::fs::release_fixture();
    strata_bench::subjects::cleanup();
    c.final_summary();
}
