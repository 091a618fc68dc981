//! Pure conversions between [`Resources`] and the text the kernel's cgroup files speak, for v1 and v2,
//! plus parsers for the stat files. No file system access here, so every rule is unit-tested.

use std::collections::BTreeMap;

use super::{CgroupError, Resources};

/// The CFS period strata uses for `--cpus` (the kernel's and Docker's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kernel accepts (1 ms).
pub const CPU_MIN_QUOTA_US: u64 = 1_000;
/// Below this a container cannot even exec a shell; Docker uses the same floor (6 MiB).
pub const MEMORY_MIN_BYTES: u64 = 6 * 1024 * 1024;

/// One limit, ready to be written: which controller owns it, which file, which text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitWrite {
    /// The user-facing name of the limit (the flag without dashes), for error messages.
    pub limit: &'static str,
    /// The controller that must be enabled for the file to exist.
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
}

fn write(
    limit: &'static str,
    controller: &'static str,
    file: &'static str,
    value: String,
) -> LimitWrite {
    LimitWrite {
        limit,
        controller,
        file,
        value,
    }
}

fn invalid(limit: &'static str, value: impl ToString, reason: &str) -> CgroupError {
    CgroupError::InvalidLimit {
        limit,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The CFS quota in µs for `cpus` CPUs at [`CPU_PERIOD_US`], validated against the kernel's minimum.
pub fn cpu_quota_us(cpus: f64) -> Result<u64, CgroupError> {
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(invalid("cpus", cpus, "must be a positive number"));
    }
    let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
    if quota < CPU_MIN_QUOTA_US {
        return Err(invalid(
            "cpus",
            cpus,
            "below the kernel's minimum of 0.01 CPU",
        ));
    }
    Ok(quota)
}

/// v2 `cpu.max` text: "QUOTA PERIOD" or "max PERIOD".
pub fn format_cpu_max(quota_us: Option<u64>, period_us: u64) -> String {
    match quota_us {
        Some(q) => format!("{q} {period_us}"),
        None => format!("max {period_us}"),
    }
}

/// Parses v2 `cpu.max` into (quota µs or None for "max", period µs).
pub fn parse_cpu_max(text: &str) -> Option<(Option<u64>, u64)> {
    let mut it = text.split_whitespace();
    let quota = match it.next()? {
        "max" => None,
        q => Some(q.parse().ok()?),
    };
    let period = it.next().map_or(Some(CPU_PERIOD_US), |p| p.parse().ok())?;
    Some((quota, period))
}

/// v1 cpu.shares (2..=262144) to v2 cpu.weight (1..=10000), the conversion runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 blkio weight (10..=1000) to v2 io weight (1..=10000), the conversion runc uses.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// A memory value for v2 files: bytes, or "max" for a negative (unlimited) value.
pub fn format_max_i64(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// Parses a v2 single-value file: a number or "max" (None).
pub fn parse_max(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        t => t.parse().ok().map(Some),
    }
}

/// v1 memory.limit_in_bytes reads back this huge page-aligned number when unlimited.
pub fn v1_unlimited(value: u64) -> bool {
    value >= i64::MAX as u64 / 4096 * 4096
}

/// A `MAJ:MIN` device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u64,
    pub minor: u64,
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Parses "MAJ:MIN"; None if the text is not of that form (it may be a device path then).
pub fn parse_devnum(text: &str) -> Option<DevNum> {
    let (maj, min) = text.split_once(':')?;
    Some(DevNum {
        major: maj.trim().parse().ok()?,
        minor: min.trim().parse().ok()?,
    })
}

/// Resolves "MAJ:MIN" or a block device path (e.g. /dev/vda) to its device number.
pub fn resolve_device(spec: &str) -> Result<DevNum, CgroupError> {
    if let Some(d) = parse_devnum(spec) {
        return Ok(d);
    }
    let err = |reason: String| CgroupError::Device {
        device: spec.to_string(),
        reason,
    };
    let meta = std::fs::metadata(spec).map_err(|e| err(e.to_string()))?;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !meta.file_type().is_block_device() {
        return Err(err(
            "not a block device (give a block device path or MAJ:MIN)".into(),
        ));
    }
    let rdev = meta.rdev();
    Ok(DevNum {
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
    })
}

/// Resolved per-device bps throttles: device → (read bps, write bps).
pub type Throttles = BTreeMap<DevNum, (Option<u64>, Option<u64>)>;

/// Resolves the device strings of both throttle lists and merges them per device.
pub fn resolve_throttles(res: &Resources) -> Result<Throttles, CgroupError> {
    let mut out = Throttles::new();
    for (dev, rate) in &res.device_read_bps {
        out.entry(resolve_device(dev)?).or_default().0 = Some(*rate);
    }
    for (dev, rate) in &res.device_write_bps {
        out.entry(resolve_device(dev)?).or_default().1 = Some(*rate);
    }
    for (dev, (r, w)) in &out {
        if r == &Some(0) || w == &Some(0) {
            return Err(invalid(
                "device-bps",
                dev,
                "a rate must be at least 1 byte/s",
            ));
        }
    }
    Ok(out)
}

/// One v2 `io.max` line: "MAJ:MIN rbps=R wbps=W" with only the set keys.
pub fn format_io_max(dev: DevNum, rbps: Option<u64>, wbps: Option<u64>) -> String {
    let mut line = dev.to_string();
    if let Some(r) = rbps {
        line.push_str(&format!(" rbps={r}"));
    }
    if let Some(w) = wbps {
        line.push_str(&format!(" wbps={w}"));
    }
    line
}

/// Parses `io.max` / `io.stat`-style lines: "MAJ:MIN key=value key=value…" → device → key → value
/// ("max" is returned as u64::MAX).
pub fn parse_keyed_device_lines(text: &str) -> BTreeMap<DevNum, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(dev) = it.next().and_then(parse_devnum) else {
            continue;
        };
        let entry: &mut BTreeMap<String, u64> = out.entry(dev).or_default();
        for kv in it {
            if let Some((k, v)) = kv.split_once('=') {
                let v = if v == "max" {
                    Some(u64::MAX)
                } else {
                    v.parse().ok()
                };
                if let Some(v) = v {
                    entry.insert(k.to_string(), v);
                }
            }
        }
    }
    out
}

/// Sums read and write bytes over all devices of a v2 `io.stat`.
pub fn io_stat_bytes_v2(text: &str) -> (u64, u64) {
    parse_keyed_device_lines(text)
        .values()
        .fold((0, 0), |(r, w), kv| {
            (
                r + kv.get("rbytes").copied().unwrap_or(0),
                w + kv.get("wbytes").copied().unwrap_or(0),
            )
        })
}

/// Read and written bytes per device of v1 io_service_bytes files, merged per device.
///
/// No one v1 file counts every device on kernels since 6.9: blk-throttle is set up on a disk only
/// once a limit is written for it, and `blkio.throttle.io_service_bytes` is empty for every other
/// disk; `blkio.bfq.io_service_bytes` counts only disks BFQ schedules. Both count the same bytes
/// where both count, so each device takes the larger of the two, never their sum.
pub fn io_service_bytes_v1(texts: &[&str]) -> (u64, u64) {
    let mut per_dev: BTreeMap<DevNum, (u64, u64)> = BTreeMap::new();
    for text in texts {
        let mut this: BTreeMap<DevNum, (u64, u64)> = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (3, Some(dev)) = (f.len(), f.first().and_then(|d| parse_devnum(d))) else {
                continue;
            };
            let n: u64 = f[2].parse().unwrap_or(0);
            let e = this.entry(dev).or_default();
            match f[1] {
                "Read" => e.0 += n,
                "Write" => e.1 += n,
                _ => {}
            }
        }
        for (dev, (r, w)) in this {
            let e = per_dev.entry(dev).or_default();
            *e = (e.0.max(r), e.1.max(w));
        }
    }
    per_dev
        .values()
        .fold((0, 0), |(r, w), (dr, dw)| (r + dr, w + dw))
}

/// Parses a flat keyed file ("key value" per line: cpu.stat, memory.events, memory.oom_control).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Everything a v2 cgroup needs written, in a safe order (memory.max before memory.swap.max).
pub fn v2_writes(res: &Resources) -> Result<Vec<LimitWrite>, CgroupError> {
    let mut out = Vec::new();
    if let Some(m) = res.memory {
        check_memory(m)?;
        out.push(write("memory", "memory", "memory.max", m.to_string()));
    }
    if let Some(swap) = res.memory_swap {
        // Docker's --memory-swap is memory+swap; v2's memory.swap.max is swap alone.
        let value = match (swap, res.memory) {
            (s, _) if s < 0 => "max".to_string(),
            (s, Some(m)) if s as u64 >= m => (s as u64 - m).to_string(),
            (_, Some(_)) => {
                return Err(invalid(
                    "memory-swap",
                    swap,
                    "must not be smaller than --memory",
                ));
            }
            (_, None) => return Err(invalid("memory-swap", swap, "needs --memory as well")),
        };
        out.push(write("memory-swap", "memory", "memory.swap.max", value));
    }
    if let Some(cpus) = res.cpus {
        let quota = cpu_quota_us(cpus)?;
        out.push(write(
            "cpus",
            "cpu",
            "cpu.max",
            format_cpu_max(Some(quota), CPU_PERIOD_US),
        ));
    }
    if let Some(shares) = res.cpu_shares {
        check_shares(shares)?;
        out.push(write(
            "cpu-shares",
            "cpu",
            "cpu.weight",
            shares_to_weight(shares).to_string(),
        ));
    }
    if let Some(set) = &res.cpuset {
        check_cpuset(set)?;
        out.push(write("cpuset", "cpuset", "cpuset.cpus", set.clone()));
    }
    if let Some(p) = res.pids {
        out.push(write("pids", "pids", "pids.max", pids_value(p)?));
    }
    if let Some(w) = res.io_weight {
        check_io_weight(w)?;
        out.push(write(
            "io-weight",
            "io",
            "io.weight",
            format!("default {}", blkio_weight_to_io_weight(w)),
        ));
    }
    for (dev, (r, w)) in resolve_throttles(res)? {
        out.push(write(
            "device-bps",
            "io",
            "io.max",
            format_io_max(dev, r, w),
        ));
    }
    Ok(out)
}

pub fn check_memory(m: u64) -> Result<(), CgroupError> {
    if m < MEMORY_MIN_BYTES {
        return Err(invalid("memory", m, "below the minimum of 6 MiB"));
    }
    if m > i64::MAX as u64 {
        return Err(invalid("memory", m, "too large"));
    }
    Ok(())
}

pub fn check_shares(shares: u64) -> Result<(), CgroupError> {
    if !(2..=262_144).contains(&shares) {
        return Err(invalid(
            "cpu-shares",
            shares,
            "must be between 2 and 262144",
        ));
    }
    Ok(())
}

pub fn check_io_weight(w: u16) -> Result<(), CgroupError> {
    if !(10..=1000).contains(&w) {
        return Err(invalid("io-weight", w, "must be between 10 and 1000"));
    }
    Ok(())
}

/// A cpuset list: comma-separated CPU numbers or ranges ("0-1,3").
pub fn check_cpuset(set: &str) -> Result<(), CgroupError> {
    let ok = !set.is_empty()
        && set.split(',').all(|part| {
            let mut r = part.splitn(2, '-');
            let a = r.next().and_then(|a| a.parse::<u32>().ok());
            match (a, r.next()) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                _ => false,
            }
        });
    if !ok {
        return Err(invalid("cpuset", set, "expected a CPU list such as 0-1,3"));
    }
    Ok(())
}

/// Parses a CPU list ("0-1,3") into inclusive ranges; None when malformed.
fn cpu_ranges(list: &str) -> Option<Vec<(u32, u32)>> {
    list.trim()
        .split(',')
        .map(|part| match part.split_once('-') {
            None => part.parse().ok().map(|a| (a, a)),
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        })
        .collect()
}

/// Checks a valid `--cpuset` list against the host's online CPUs (the text of
/// /sys/devices/system/cpu/online), so a CPU that is not there is named instead of the kernel's bare
/// ERANGE or EINVAL.
pub fn check_cpuset_online(set: &str, online: &str) -> Result<(), CgroupError> {
    let (Some(want), Some(have)) = (cpu_ranges(set), cpu_ranges(online)) else {
        return Ok(());
    };
    let is_online = |cpu: u32| have.iter().any(|&(a, b)| (a..=b).contains(&cpu));
    let top = have.iter().map(|&(_, b)| b).max().unwrap_or(0);
    for (a, b) in want {
        // Past the highest online CPU nothing is online: stop there, whatever the range's end.
        let missing = if a > top {
            Some(a)
        } else {
            (a..=b.min(top.saturating_add(1))).find(|&c| !is_online(c))
        };
        if let Some(cpu) = missing {
            return Err(invalid(
                "cpuset",
                set,
                &format!("CPU {cpu} is not online here (online: {})", online.trim()),
            ));
        }
    }
    Ok(())
}

/// pids.max text: a positive number, or "max" for a negative value (unlimited); 0 is rejected
/// because no process could ever start.
pub fn pids_value(p: i64) -> Result<String, CgroupError> {
    match p {
        0 => Err(invalid(
            "pids",
            p,
            "must be at least 1 (or -1 for unlimited)",
        )),
        p if p < 0 => Ok("max".to_string()),
        p => Ok(p.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_roundtrip() {
        assert_eq!(format_cpu_max(Some(50_000), 100_000), "50000 100000");
        assert_eq!(format_cpu_max(None, 100_000), "max 100000");
        assert_eq!(
            parse_cpu_max("50000 100000\n"),
            Some((Some(50_000), 100_000))
        );
        assert_eq!(parse_cpu_max("max 100000"), Some((None, 100_000)));
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(cpu_quota_us(0.5).unwrap(), 50_000);
        assert_eq!(cpu_quota_us(1.5).unwrap(), 150_000);
        assert!(cpu_quota_us(0.001).is_err());
        assert!(cpu_quota_us(-1.0).is_err());
        assert!(cpu_quota_us(f64::NAN).is_err());
    }

    #[test]
    fn weights_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
    }

    #[test]
    fn max_values() {
        assert_eq!(format_max_i64(-1), "max");
        assert_eq!(format_max_i64(4096), "4096");
        assert_eq!(parse_max("max\n"), Some(None));
        assert_eq!(parse_max("1048576\n"), Some(Some(1_048_576)));
        assert_eq!(parse_max("x"), None);
        assert!(v1_unlimited(9_223_372_036_854_771_712));
        assert!(!v1_unlimited(1 << 30));
    }

    #[test]
    fn io_max_lines() {
        let dev = DevNum {
            major: 254,
            minor: 0,
        };
        assert_eq!(format_io_max(dev, Some(1), None), "254:0 rbps=1");
        assert_eq!(format_io_max(dev, Some(1), Some(2)), "254:0 rbps=1 wbps=2");
        assert_eq!(format_io_max(dev, None, Some(2)), "254:0 wbps=2");
        let parsed = parse_keyed_device_lines("254:0 rbps=max wbps=1048576 riops=max wiops=max\n");
        assert_eq!(parsed[&dev]["wbps"], 1_048_576);
        assert_eq!(parsed[&dev]["rbps"], u64::MAX);
    }

    #[test]
    fn io_stat_sums() {
        let v2 = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                  253:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(io_stat_bytes_v2(v2), (4097, 8194));
        let v1 = "254:0 Read 100\n254:0 Write 200\n254:0 Sync 300\n254:0 Async 0\n254:0 Discard 0\n\
                  254:0 Total 300\nTotal 300\n";
        assert_eq!(io_service_bytes_v1(&[v1]), (100, 200));
        // Throttle counts only 254:0 (a limit was set there), BFQ counts 254:0 and 7:3: the shared
        // device is counted once, the BFQ-only one is added.
        let bfq = "254:0 Read 100\n254:0 Write 150\n7:3 Read 5\n7:3 Write 0\nTotal 255\n";
        assert_eq!(io_service_bytes_v1(&[v1, bfq]), (105, 200));
        assert_eq!(io_service_bytes_v1(&["Total 0\n", ""]), (0, 0));
    }

    #[test]
    fn flat_keyed() {
        let m = parse_flat_keyed("usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n");
        assert_eq!(m["usage_usec"], 1234);
        let oom = parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
        assert_eq!(oom["oom_kill"], 3);
    }

    #[test]
    fn devices_resolve() {
        assert_eq!(
            resolve_device("8:16").unwrap(),
            DevNum {
                major: 8,
                minor: 16
            }
        );
        // /dev/null is a character device: rejected with a message naming it.
        let e = resolve_device("/dev/null").unwrap_err().to_string();
        assert!(e.contains("/dev/null") && e.contains("block device"), "{e}");
        assert!(resolve_device("/nonexistent/dev").is_err());
    }

    #[test]
    fn v2_writes_cover_every_limit() {
        let res = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            cpus: Some(0.5),
            cpu_shares: Some(1024),
            cpuset: Some("0-1".into()),
            pids: Some(32),
            io_weight: Some(500),
            device_read_bps: vec![("8:0".into(), 1000)],
            device_write_bps: vec![("8:0".into(), 2000), ("8:16".into(), 3000)],
            // Not a file write on v2: an eBPF program (cgroups::devices).
            devices: crate::cgroups::devices::docker_default(),
        };
        let w: Vec<(&str, String)> = v2_writes(&res)
            .unwrap()
            .into_iter()
            .map(|w| (w.file, w.value))
            .collect();
        assert_eq!(
            w,
            vec![
                ("memory.max", (64u64 << 20).to_string()),
                ("memory.swap.max", (32u64 << 20).to_string()),
                ("cpu.max", "50000 100000".into()),
                ("cpu.weight", "39".into()),
                ("cpuset.cpus", "0-1".into()),
                ("pids.max", "32".into()),
                ("io.weight", "default 4950".into()),
                ("io.max", "8:0 rbps=1000 wbps=2000".into()),
                ("io.max", "8:16 wbps=3000".into()),
            ]
        );
    }

    #[test]
    fn v2_writes_reject_bad_values_naming_the_limit() {
        let cases: Vec<(Resources, &str)> = vec![
            (
                Resources {
                    memory: Some(1024),
                    ..Default::default()
                },
                "memory",
            ),
            (
                Resources {
                    memory_swap: Some(1 << 30),
                    ..Default::default()
                },
                "memory-swap",
            ),
            (
                Resources {
                    memory: Some(64 << 20),
                    memory_swap: Some(32 << 20),
                    ..Default::default()
                },
                "memory-swap",
            ),
            (
                Resources {
                    cpus: Some(0.0),
                    ..Default::default()
                },
                "cpus",
            ),
            (
                Resources {
                    cpu_shares: Some(1),
                    ..Default::default()
                },
                "cpu-shares",
            ),
            (
                Resources {
                    cpuset: Some("a-b".into()),
                    ..Default::default()
                },
                "cpuset",
            ),
            (
                Resources {
                    cpuset: Some("3-1".into()),
                    ..Default::default()
                },
                "cpuset",
            ),
            (
                Resources {
                    pids: Some(0),
                    ..Default::default()
                },
                "pids",
            ),
            (
                Resources {
                    io_weight: Some(5),
                    ..Default::default()
                },
                "io-weight",
            ),
            (
                Resources {
                    device_write_bps: vec![("8:0".into(), 0)],
                    ..Default::default()
                },
                "device-bps",
            ),
        ];
        for (res, name) in cases {
            let e = v2_writes(&res).unwrap_err().to_string();
            assert!(e.contains(name), "{e:?} should name {name}");
        }
        // Unlimited values are fine.
        let res = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            pids: Some(-1),
            ..Default::default()
        };
        let w = v2_writes(&res).unwrap();
        assert_eq!(w[1].value, "max");
        assert_eq!(w[2].value, "max");
    }

    #[test]
    fn cpuset_lists() {
        for ok in ["0", "0-1", "0,2-3", "1-1"] {
            check_cpuset(ok).unwrap();
        }
        for bad in ["", "-1", "0-", "x", "0,,1"] {
            assert!(check_cpuset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpusets_name_a_cpu_that_is_not_online() {
        for ok in ["0", "0-1", "3", "0,3-4"] {
            check_cpuset_online(ok, "0-1,3-5\n").unwrap();
        }
        for (bad, cpu) in [
            ("2", "CPU 2 "),
            ("0-3", "CPU 2 "),
            ("6", "CPU 6 "),
            ("5-4000000000", "CPU 6 "),
            ("99", "CPU 99 "),
        ] {
            let e = check_cpuset_online(bad, "0-1,3-5\n")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(cpu) && e.contains("online: 0-1,3-5"),
                "{bad}: {e}"
            );
        }
    }
}
