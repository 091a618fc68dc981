//! strata's STRATA_PHASES file, as the startup cases read it.

use std::path::Path;
use std::time::Duration;

/// strata's STRATA_PHASES file: `{"phases":[{"name":..,"start_ns":..,"end_ns":..}],"peak_rss_bytes":..}`
/// → the phases and strata's own peak RSS (VmHWM); absent or unreadable gives neither (the total still
/// counts). `spawn` (CLOCK_MONOTONIC just before the spawn and just after the reap) gives two more parts,
/// the rest of the sample: `launch`, spawn until the first phase (fork, exec, argument
/// parsing, the name claim), and `exit`, the last phase until the reap (writing this file, process exit).
pub fn read_phases(path: &Path, spawn: (u64, u64)) -> (Vec<(String, Duration)>, Option<u64>) {
    let Some(v) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return (Vec::new(), None);
    };
    let spans: Vec<(String, u64, u64)> = v
        .get("phases")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?.to_string();
            Some((
                name,
                p.get("start_ns")?.as_u64()?,
                p.get("end_ns")?.as_u64()?,
            ))
        })
        .collect();
    let mut phases: Vec<(String, Duration)> = spans
        .iter()
        .map(|(n, s, e)| (n.clone(), Duration::from_nanos(e.saturating_sub(*s))))
        .collect();
    let first = spans.iter().map(|(_, s, _)| *s).min();
    let last = spans.iter().map(|(_, _, e)| *e).max();
    let (launched, reaped) = spawn;
    if let (Some(first), Some(last)) = (first, last) {
        // Only when the phases lie inside the sample (one clock, one host).
        if launched <= first && last <= reaped {
            phases.push(("launch".into(), Duration::from_nanos(first - launched)));
            phases.push(("exit".into(), Duration::from_nanos(reaped - last)));
        }
    }
    (phases, v.get("peak_rss_bytes").and_then(|b| b.as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_the_time_around_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("phases.json");
        std::fs::write(
            &f,
            r#"{"phases":[{"name":"prepare","start_ns":1000,"end_ns":1500},
                {"name":"run","start_ns":1500,"end_ns":4000}],"peak_rss_bytes":4096}"#,
        )
        .unwrap();
        let (parts, rss) = read_phases(&f, (400, 4700));
        let get = |n: &str| {
            parts
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, d)| d.as_nanos())
        };
        assert_eq!(get("prepare"), Some(500));
        assert_eq!(get("run"), Some(2500));
        assert_eq!(get("launch"), Some(600));
        assert_eq!(get("exit"), Some(700));
        assert_eq!(rss, Some(4096));
        // Phases outside the sample (another clock): no launch or exit.
        let (parts, _) = read_phases(&f, (2000, 3000));
        assert!(parts.iter().all(|(k, _)| k != "launch" && k != "exit"));
        assert_eq!(parts.len(), 2);
        // No file: nothing.
        assert_eq!(
            read_phases(&dir.path().join("none"), (0, 1)),
            (Vec::new(), None)
        );
    }
}
