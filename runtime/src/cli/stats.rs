//! `strata stats [ID…] [--json] [--watch]`: CPU %, CPU time, memory usage/limit/peak, pids and IO
//! bytes of containers, read from their cgroups.
//!
//! Containers are found through strata's state (each records its cgroup); a name without state is
//! looked up as a cgroup under `--cgroup-parent` (containers made by other tools or by tests). With
//! no ID: every running container with a cgroup, plus every cgroup under the parent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use strata_runtime::cgroups::{self, CgroupStats, ContainerCgroup};
use strata_runtime::state::{StateRoot, Status};

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

/// What to show: display id → (cgroup parent, cgroup name).
type Targets = BTreeMap<String, (String, String)>;

/// The cgroup of container `id`: from its state, else a cgroup of that name under `parent`.
fn resolve(root: &StateRoot, parent: &str, id: &str) -> anyhow::Result<(String, String)> {
    if let Ok(st) = root.load(id) {
        return st
            .cgroup
            .with_context(|| format!("container {id} has no cgroup"));
    }
    ContainerCgroup::open(parent, id).with_context(|| format!("container {id} does not exist"))?;
    Ok((parent.to_string(), id.to_string()))
}

/// Every running container with a cgroup, plus every cgroup under `parent` not already listed.
fn all_targets(root: &StateRoot, parent: &str) -> anyhow::Result<Targets> {
    let mut out = Targets::new();
    // A missing state root just means no container was ever run here.
    for (id, st) in root.list().unwrap_or_default() {
        if let Some(st) = st
            && st.live_status() == Status::Running
            && let Some(cg) = st.cgroup
        {
            out.insert(id, cg);
        }
    }
    let known: Vec<(String, String)> = out.values().cloned().collect();
    for name in ContainerCgroup::list(parent)? {
        let cg = (parent.to_string(), name.clone());
        if !known.contains(&cg) {
            out.entry(name).or_insert(cg);
        }
    }
    Ok(out)
}

fn sample(targets: &Targets) -> BTreeMap<String, CgroupStats> {
    targets
        .iter()
        .filter_map(|(id, (parent, name))| {
            let s = ContainerCgroup::open(parent, name).ok()?.stats().ok()?;
            Some((id.clone(), s))
        })
        .collect()
}

fn print_table(rows: &[StatsRow]) {
    let mut cells: Vec<[String; 7]> = Vec::new();
    for r in rows {
        let s = &r.stats;
        let limit = s
            .memory_limit_bytes
            .map_or("unlimited".to_string(), human_bytes);
        let pids = match s.pids_limit {
            Some(l) => format!("{}/{l}", s.pids_current),
            None => s.pids_current.to_string(),
        };
        cells.push([
            r.id.clone(),
            format!("{:.1}%", r.cpu_percent),
            format!("{:.3}s", s.cpu_usage_ns as f64 / 1e9),
            format!("{} / {limit}", human_bytes(s.memory_usage_bytes)),
            s.memory_peak_bytes.map_or("-".to_string(), human_bytes),
            pids,
            format!(
                "{} / {}",
                human_bytes(s.io_read_bytes),
                human_bytes(s.io_write_bytes)
            ),
        ]);
    }
    let header = [
        "ID",
        "CPU %",
        "CPU TIME",
        "MEM USAGE / LIMIT",
        "MEM PEAK",
        "PIDS",
        "IO READ / WRITE",
    ];
    let text = super::table(header, &header[1..], &cells);
    let mut lines = text.lines();
    if let Some(h) = lines.next() {
        println!("{h}");
    }
    for (line, r) in lines.zip(rows) {
        println!("{line}");
        if r.stats.oom_kills > 0 {
            println!("  OOM killer: {} kill(s)", r.stats.oom_kills);
        }
    }
}

pub fn run(args: StatsArgs, state: &super::StateArgs) -> anyhow::Result<()> {
    if !(args.interval > 0.0 && args.interval <= 3600.0) {
        anyhow::bail!(
            "invalid --interval {}: must be between 0 and 3600 seconds",
            args.interval
        );
    }
    let interval = Duration::from_secs_f64(args.interval);
    let root = state.root();
    let parent = args.cgroup_parent.as_str();
    // Unknown names are an error up front; later disappearances just drop the row.
    let explicit: Targets = args
        .ids
        .iter()
        .map(|id| Ok((id.clone(), resolve(&root, parent, id)?)))
        .collect::<anyhow::Result<_>>()?;
    let targets = || -> anyhow::Result<Targets> {
        if args.ids.is_empty() {
            all_targets(&root, parent)
        } else {
            Ok(explicit.clone())
        }
    };
    let mut current = targets()?;
    let mut prev = sample(&current);
    let mut prev_t = Instant::now();
    loop {
        std::thread::sleep(interval);
        if args.ids.is_empty() {
            current = targets()?;
        }
        let now = sample(&current);
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
