//! What the machine was doing while a group ran: CPU time by kind across all CPUs (from /proc/stat), the
//! time some task waited for a CPU (/proc/pressure/cpu), and the load average at both ends. On a shared VM
//! steal time and CPU pressure are what make one run slower than the next; a report that shows them lets
//! its reader tell a regression from a busy host.

use serde::{Deserialize, Serialize};

/// A snapshot taken before and after a group.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The aggregate "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal, in ticks.
    cpu: Option<[u64; 8]>,
    /// /proc/pressure/cpu "some" total, µs.
    pressure_us: Option<u64>,
    load1: Option<f64>,
    at: std::time::Instant,
}

/// The conditions over a group, as shares of all CPU time (every CPU) or of the wall time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// Share of CPU time in user and nice, %.
    pub user_pct: f64,
    /// Share in system, irq and softirq, %.
    pub system_pct: f64,
    /// Share waiting for IO, %.
    pub iowait_pct: f64,
    /// Share the hypervisor gave to others (steal), %.
    pub steal_pct: f64,
    /// Share of wall time in which some runnable task waited for a CPU, %; None without PSI.
    pub cpu_pressure_pct: Option<f64>,
    /// The 1-minute load average at the start and at the end.
    pub load_start: Option<f64>,
    pub load_end: Option<f64>,
}

/// Parses the aggregate line of /proc/stat ("cpu  user nice system idle iowait irq softirq steal …").
fn parse_stat(text: &str) -> Option<[u64; 8]> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut v = [0u64; 8];
    let mut fields = line.split_whitespace().skip(1);
    for slot in &mut v {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(v)
}

/// The "total=" of the "some" line of a PSI file.
fn parse_pressure(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

impl Snapshot {
    pub fn take() -> Snapshot {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        Snapshot {
            cpu: read("/proc/stat").as_deref().and_then(parse_stat),
            pressure_us: read("/proc/pressure/cpu")
                .as_deref()
                .and_then(parse_pressure),
            load1: read("/proc/loadavg")
                .and_then(|t| t.split_whitespace().next().and_then(|f| f.parse().ok())),
            at: std::time::Instant::now(),
        }
    }

    /// The conditions from `self` (the start) to `end`; None when /proc/stat could not be read or no
    /// CPU time passed.
    pub fn until(&self, end: &Snapshot) -> Option<Conditions> {
        let (a, b) = (self.cpu?, end.cpu?);
        let d: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(x, y)| y.saturating_sub(*x) as f64)
            .collect();
        let total: f64 = d.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let pct = |ticks: f64| 100.0 * ticks / total;
        let wall_us = end.at.duration_since(self.at).as_micros() as f64;
        Some(Conditions {
            user_pct: pct(d[0] + d[1]),
            system_pct: pct(d[2] + d[5] + d[6]),
            iowait_pct: pct(d[4]),
            steal_pct: pct(d[7]),
            cpu_pressure_pct: match (self.pressure_us, end.pressure_us) {
                (Some(x), Some(y)) if wall_us > 0.0 => {
                    Some((100.0 * y.saturating_sub(x) as f64 / wall_us).min(100.0))
                }
                _ => None,
            },
            load_start: self.load1,
            load_end: end.load1,
        })
    }
}

impl Conditions {
    /// One line for the report.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "CPU time over all CPUs: user {:.1}%, system {:.1}%, iowait {:.1}%, steal {:.1}%",
            self.user_pct, self.system_pct, self.iowait_pct, self.steal_pct
        );
        if let Some(p) = self.cpu_pressure_pct {
            s.push_str(&format!("; some task waited for a CPU {p:.1}% of the time"));
        }
        if let (Some(a), Some(b)) = (self.load_start, self.load_end) {
            s.push_str(&format!("; load average {a:.2} → {b:.2}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(cpu: [u64; 8], pressure: u64, load: f64, at: std::time::Instant) -> Snapshot {
        Snapshot {
            cpu: Some(cpu),
            pressure_us: Some(pressure),
            load1: Some(load),
            at,
        }
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_stat(
                "cpu  703872 0 236947 1075516 15701 0 2187 790 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
            ),
            Some([703872, 0, 236947, 1075516, 15701, 0, 2187, 790])
        );
        assert_eq!(parse_stat("cpu0 1 2 3\n"), None);
        assert_eq!(
            parse_pressure(
                "some avg10=0.56 avg60=6.33 avg300=7.58 total=745421904\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
            ),
            Some(745421904)
        );
    }

    #[test]
    fn shares_come_from_the_differences() {
        let t0 = std::time::Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(2);
        // 200 ticks passed: user 50+10, system 20+5+5, idle 80, iowait 10, steal 20.
        let a = snap([100, 0, 100, 100, 100, 0, 0, 0], 1_000_000, 0.5, t0);
        let b = snap([150, 10, 120, 180, 110, 5, 5, 20], 1_500_000, 1.25, t1);
        let c = a.until(&b).unwrap();
        assert_eq!((c.user_pct, c.system_pct), (30.0, 15.0));
        assert_eq!((c.iowait_pct, c.steal_pct), (5.0, 10.0));
        assert_eq!(c.cpu_pressure_pct, Some(25.0));
        assert_eq!((c.load_start, c.load_end), (Some(0.5), Some(1.25)));
        assert!(c.describe().contains("steal 10.0%"), "{}", c.describe());
        assert_eq!(a.until(&a), None, "no time passed");
    }
}
