//! report.md: the method, the machine, the headline startup table with ratios, then every group with its
//! statistics, ratio table and plot; skipped and failed subjects with their reasons.

use std::fmt::Write;

use super::json::{GroupResult, Results, Status};
use super::plots::Plots;
use super::{fmt_bytes, fmt_metric, fmt_ns};
use crate::cases::Family;
use crate::stats::{DecisionRule, RESAMPLES, SEED};

const GENERAL_METHOD: &str = "Every group's subjects run interleaved, round by round (A B C A B C …), so drift \
    hits all alike; before each group the suite calls sync(2), untimed, so dirty data an earlier group left is not \
    written back during its samples; the first rounds are warm-up and are not counted; every other sample is kept (samples.csv, \
    results.json). Statistics per subject: median, p90, p99 (linear interpolation between closest ranks), min, max, \
    mean, sample standard deviation, and a 95% bootstrap CI of the median (percentile method). Outliers lie outside \
    the Tukey fences (1.5 IQR beyond the quartiles); they are flagged and counted, never dropped. Ratios are \
    median(subject) ÷ median(reference) with a 95% CI from paired resampling: the rounds are resampled, taking both \
    subjects' samples of a round together.";

fn status_text(s: Status, reason: &Option<String>) -> String {
    match s {
        Status::Ok => "ok".into(),
        Status::Skipped => format!("skipped: {}", reason.as_deref().unwrap_or("")),
        Status::Failed => format!("failed: {}", reason.as_deref().unwrap_or("")),
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn stats_table(out: &mut String, g: &GroupResult) {
    let _ = writeln!(
        out,
        "| subject | n | median | 95% CI of median | p90 | p99 | min | max | mean | sd | outliers | status |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for c in &g.cases {
        match &c.summary {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} – {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    c.subject,
                    s.n,
                    fmt_ns(s.median),
                    fmt_ns(s.median_ci_low),
                    fmt_ns(s.median_ci_high),
                    fmt_ns(s.p90),
                    fmt_ns(s.p99),
                    fmt_ns(s.min),
                    fmt_ns(s.max),
                    fmt_ns(s.mean),
                    fmt_ns(s.sd),
                    s.outliers,
                    md_escape(&status_text(c.status, &c.reason))
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| {} | 0 | – | – | – | – | – | – | – | – | – | {} |",
                    c.subject,
                    md_escape(&status_text(c.status, &c.reason))
                );
            }
        }
    }
    out.push('\n');
}

fn ratio_table(out: &mut String, g: &GroupResult) {
    if g.ratios.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| subject | ÷ reference | ratio of medians | 95% CI (paired) |"
    );
    let _ = writeln!(out, "|---|---|---:|---|");
    for r in &g.ratios {
        let e = &r.estimate;
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}× | {:.2} – {:.2} |",
            r.subject, r.reference, e.ratio, e.ci_low, e.ci_high
        );
    }
    out.push('\n');
}

fn extras(out: &mut String, g: &GroupResult) {
    for c in g
        .cases
        .iter()
        .filter(|c| !c.parts.is_empty() || !c.metrics.is_empty())
    {
        if !c.parts.is_empty() {
            let _ = writeln!(
                out,
                "Parts of **{}** (medians): {}\n",
                c.subject,
                c.parts
                    .iter()
                    .map(|(k, s)| format!("{k} {}", fmt_ns(s.median)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !c.metrics.is_empty() {
            let _ = writeln!(
                out,
                "Metrics of **{}** (medians over samples): {}\n",
                c.subject,
                c.metrics
                    .iter()
                    .map(|(k, s)| format!("{k} {}", fmt_metric(k, s.median)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // Byte metrics (memory) are listed per sample too, so growth over the run shows.
            for k in c.metrics.keys().filter(|k| k.ends_with("_bytes")) {
                let mut by_round: Vec<(usize, f64)> = c
                    .samples
                    .iter()
                    .filter_map(|s| s.metrics.get(k).map(|v| (s.round, *v)))
                    .collect();
                by_round.sort_by_key(|(r, _)| *r);
                let _ = writeln!(
                    out,
                    "{k} of **{}** per sample, in order: {}\n",
                    c.subject,
                    by_round
                        .iter()
                        .map(|(_, v)| fmt_bytes(*v))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
}

/// The headline: startup of /bin/true per subject, with ratios (also printed by `strata-bench run`).
pub fn startup_section(g: &GroupResult) -> String {
    let mut out =
        String::from("## Startup of /bin/true: floor / strata / crun / runc / docker / podman\n\n");
    stats_table(&mut out, g);
    ratio_table(&mut out, g);
    out
}

pub fn render(r: &Results, plots: &Plots) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "# strata-bench report: {} suite on {}\n",
        r.options.suite.as_str(),
        m.hostname
    );
    let _ = writeln!(
        out,
        "Started at Unix time {} and took {:.0} s. strata commit `{}`. strata-bench {}, results schema {} v{}.\n",
        r.started_unix, r.duration_s, m.strata_commit, r.tool_version, r.schema, r.schema_version
    );
    let _ = writeln!(
        out,
        "Command line: `{}`; samples {}, warm-up rounds {}, only {:?}.\n",
        r.options.command_line.join(" "),
        r.options.samples,
        r.options.warmup,
        r.options.only
    );
    if let Some(g) = r
        .groups
        .iter()
        .find(|g| g.family == Family::Startup && g.name == "true")
    {
        out.push_str(&startup_section(g));
        if let Some(p) = &plots.startup_cdf {
            let _ = writeln!(out, "![startup CDF]({p})\n");
        }
        if let Some(p) = &plots.phases {
            let _ = writeln!(out, "![strata phases]({p})\n");
        }
    }
    let _ = writeln!(
        out,
        "## Method\n\n{GENERAL_METHOD} Bootstrap: {RESAMPLES} resamples, fixed seed {SEED:#x}.\n"
    );
    let rule = DecisionRule::default();
    let _ = writeln!(
        out,
        "`strata-bench compare` calls a change a regression or an improvement only when a two-sided permutation test \
         on the difference of medians gives p < {} AND the median moved by at least {:.0}%.\n",
        rule.alpha,
        rule.min_effect * 100.0
    );
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let rows = [
        ("kernel release", m.kernel_release.clone()),
        ("kernel version", m.kernel_version.clone()),
        ("cgroup mode", m.cgroup_mode.clone()),
        ("cgroup v1 controllers", m.cgroup_v1_controllers.join(" ")),
        ("cgroup v2 controllers", m.cgroup_v2_controllers.join(" ")),
        ("CPU", m.cpu_model.clone()),
        ("cores", m.cores.to_string()),
        (
            "memory",
            format!("{:.1} GiB", m.memory_bytes as f64 / (1u64 << 30) as f64),
        ),
        ("governor", m.governor.clone()),
        ("mounts", m.mount_count.to_string()),
        ("live net namespaces", m.live_net_namespaces.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {} |", md_escape(&v));
    }
    for (k, v) in &m.tool_versions {
        let _ = writeln!(out, "| {k} | {} |", md_escape(v));
    }
    let _ = writeln!(
        out,
        "\nMitigations: {}\n",
        m.mitigations
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    for fam in Family::ALL {
        let gs: Vec<&GroupResult> = r.groups.iter().filter(|g| g.family == fam).collect();
        if gs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {fam}\n");
        for p in plots.scaling.iter().filter(|_| fam == Family::Scaling) {
            let _ = writeln!(out, "![scaling]({p})\n");
        }
        for g in gs {
            let _ = writeln!(
                out,
                "### {}\n\n{} (group took {:.1} s)\n",
                g.id(),
                g.method,
                g.duration_s
            );
            if let Some(c) = &g.conditions {
                let _ = writeln!(out, "Machine during the samples: {}.\n", c.describe());
            }
            stats_table(&mut out, g);
            ratio_table(&mut out, g);
            extras(&mut out, g);
            if let Some(p) = plots.for_group(&g.id()) {
                let _ = writeln!(out, "![{}]({p})\n", g.id());
            }
        }
    }
    let skipped: Vec<String> = r
        .groups
        .iter()
        .flat_map(|g| {
            g.cases
                .iter()
                .filter(|c| c.status != Status::Ok)
                .map(move |c| (g, c))
        })
        .map(|(g, c)| {
            format!(
                "- {}/{}: {}",
                g.id(),
                c.subject,
                md_escape(&status_text(c.status, &c.reason))
            )
        })
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "## Skipped and failed subjects\n\n{}\n",
            skipped.join("\n")
        );
    }
    out
}
