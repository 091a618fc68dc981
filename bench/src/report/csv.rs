//! samples.csv: one row per raw sample (warm-up excluded), outliers flagged.

use std::fmt::Write;

use super::json::Results;

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn render(results: &Results) -> String {
    let mut out = String::from("family,group,subject,round,value_ns,outlier,parts_ns,metrics\n");
    for g in &results.groups {
        for c in &g.cases {
            for s in &c.samples {
                let parts: Vec<String> =
                    s.parts_ns.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let metrics: Vec<String> =
                    s.metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    g.family,
                    quote(&g.name),
                    quote(&c.subject),
                    s.round,
                    s.value_ns,
                    s.outlier,
                    quote(&parts.join(";")),
                    quote(&metrics.join(";"))
                );
            }
        }
    }
    out
}
