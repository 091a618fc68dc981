//! `strata stats [ID…] [--json] [--watch]`: CPU %, CPU time, memory usage/limit/peak, pids and IO
//! bytes of containers, read from their cgroups.
//!
//! Containers are found by their cgroups under `--cgroup-parent` (strata's state directory is not
//! consulted yet): with no ID, every container cgroup under the parent is shown.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use strata_runtime::cgroups::{self, CgroupStats, ContainerCgroup};

use super::human_bytes;

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Containers to show (default: all).
    pub ids: Vec<String>,
    /// Print JSON (with --watch: one JSON array per line and interval).
    #[arg(long)]
    pub json: bool,
    /// Keep refreshing until interrupted (or until the named containers are gone).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between the two samples CPU % is computed from (and between refreshes).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// The parent cgroup the containers live under.
    #[arg(long, default_value = cgroups::DEFAULT_PARENT, env = "STRATA_CGROUP_PARENT")]
    pub cgroup_parent: String,
}

/// One row of output.
#[derive(Debug, Serialize)]
pub struct StatsRow {
    pub id: String,
    /// CPU time over wall time of the last interval, in percent of one CPU (can exceed 100).
    pub cpu_percent: f64,
    #[serde(flatten)]
    pub stats: CgroupStats,
}

/// CPU percent of one CPU between two samples `wall` apart.
pub fn cpu_percent(prev: &CgroupStats, now: &CgroupStats, wall: Duration) -> f64 {
    let wall = wall.as_nanos() as f64;
    if wall <= 0.0 {
        return 0.0;
    }
    now.cpu_usage_ns.saturating_sub(prev.cpu_usage_ns) as f64 / wall * 100.0
}

fn sample(parent: &str, ids: &[String]) -> BTreeMap<String, CgroupStats> {
    ids.iter()
        .filter_map(|id| {
            let s = ContainerCgroup::open(parent, id).ok()?.stats().ok()?;
            Some((id.clone(), s))
        })
        .collect()
}

fn print_table(rows: &[StatsRow]) {
    println!(
        "{:<24} {:>7} {:>10} {:>21} {:>10} {:>9} {:>19}",
        "ID", "CPU %", "CPU TIME", "MEM USAGE / LIMIT", "MEM PEAK", "PIDS", "IO READ / WRITE"
    );
    for r in rows {
        let s = &r.stats;
        let limit = s
            .memory_limit_bytes
            .map_or("unlimited".to_string(), human_bytes);
        let pids = match s.pids_limit {
            Some(l) => format!("{}/{l}", s.pids_current),
            None => s.pids_current.to_string(),
        };
        println!(
            "{:<24} {:>6.1}% {:>9.3}s {:>21} {:>10} {:>9} {:>19}",
            r.id,
            r.cpu_percent,
            s.cpu_usage_ns as f64 / 1e9,
            format!("{} / {limit}", human_bytes(s.memory_usage_bytes)),
            s.memory_peak_bytes.map_or("-".to_string(), human_bytes),
            pids,
            format!(
                "{} / {}",
                human_bytes(s.io_read_bytes),
                human_bytes(s.io_write_bytes)
            ),
        );
        if s.oom_kills > 0 {
            println!("{:<24} OOM killer: {} kill(s)", "", s.oom_kills);
        }
    }
}

pub fn run(args: StatsArgs) -> anyhow::Result<()> {
    if !(args.interval > 0.0 && args.interval <= 3600.0) {
        anyhow::bail!(
            "invalid --interval {}: must be between 0 and 3600 seconds",
            args.interval
        );
    }
    let interval = Duration::from_secs_f64(args.interval);
    let parent = args.cgroup_parent.as_str();
    let ids = |explicit: &[String]| -> anyhow::Result<Vec<String>> {
        if explicit.is_empty() {
            Ok(ContainerCgroup::list(parent)?)
        } else {
            Ok(explicit.to_vec())
        }
    };
    // Unknown names are an error up front; later disappearances just drop the row.
    for id in &args.ids {
        ContainerCgroup::open(parent, id).with_context(|| format!("no such container: {id}"))?;
    }
    let mut current = ids(&args.ids)?;
    let mut prev = sample(parent, &current);
    let mut prev_t = Instant::now();
    loop {
        std::thread::sleep(interval);
        if args.ids.is_empty() {
            current = ids(&args.ids)?;
        }
        let now = sample(parent, &current);
        let now_t = Instant::now();
        let rows: Vec<StatsRow> = now
            .iter()
            .map(|(id, s)| StatsRow {
                id: id.clone(),
                cpu_percent: prev
                    .get(id)
                    .map_or(0.0, |p| cpu_percent(p, s, now_t - prev_t)),
                stats: s.clone(),
            })
            .collect();
        if args.json {
            let text = if args.watch {
                serde_json::to_string(&rows)?
            } else {
                serde_json::to_string_pretty(&rows)?
            };
            println!("{text}");
        } else {
            if args.watch {
                // Clear the screen and home the cursor, as `docker stats` does.
                print!("\x1b[2J\x1b[H");
            }
            print_table(&rows);
        }
        if !args.watch || (!args.ids.is_empty() && rows.is_empty()) {
            return Ok(());
        }
        prev = now;
        prev_t = now_t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_of_one_cpu() {
        let a = CgroupStats {
            cpu_usage_ns: 1_000_000_000,
            ..Default::default()
        };
        let b = CgroupStats {
            cpu_usage_ns: 1_500_000_000,
            ..Default::default()
        };
        assert_eq!(cpu_percent(&a, &b, Duration::from_secs(1)), 50.0);
        assert_eq!(cpu_percent(&b, &a, Duration::from_secs(1)), 0.0);
        assert_eq!(cpu_percent(&a, &b, Duration::ZERO), 0.0);
    }
}
