//! Start-up phase timestamps for the bench: always recorded (a vDSO clock read each), written as JSON only
//! when `STRATA_PHASES=FILE` is set, so there is one code path either way.

use nix::time::{ClockId, clock_gettime};

#[derive(Debug, Default)]
pub struct Phases {
    done: Vec<(&'static str, u64, u64)>,
    current: Option<(&'static str, u64)>,
}

pub fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

impl Phases {
    /// Ends the current phase (if any) and starts `name`.
    pub fn start(&mut self, name: &'static str) {
        let t = now_ns();
        self.finish_at(t);
        self.current = Some((name, t));
    }

    /// Ends the current phase at `t` (a timestamp taken elsewhere, e.g. by the child) and starts `name` there.
    /// A `t` before the current phase began (the child was done before strata's own work was) splits
    /// at that beginning instead: the phases partition strata's time, never overlap.
    pub fn split_at(&mut self, t: u64, name: &'static str) {
        let t = self.current.map_or(t, |(_, start)| t.max(start));
        self.finish_at(t);
        self.current = Some((name, t));
    }

    pub fn finish(&mut self) {
        self.finish_at(now_ns());
    }

    fn finish_at(&mut self, t: u64) {
        if let Some((n, s)) = self.current.take() {
            self.done.push((n, s, t));
        }
    }

    pub fn to_json(&self) -> String {
        let items: Vec<String> = self
            .done
            .iter()
            .map(|(n, s, e)| format!("{{\"name\":\"{n}\",\"start_ns\":{s},\"end_ns\":{e}}}"))
            .collect();
        let peak = peak_rss_bytes().map_or(String::new(), |b| format!(",\"peak_rss_bytes\":{b}"));
        format!("{{\"phases\":[{}]{peak}}}", items.join(","))
    }

    /// Writes the phases (and this process's peak RSS) to `$STRATA_PHASES` when set; errors are reported on stderr, never fatal.
    pub fn write_if_requested(&mut self) {
        self.finish();
        if let Some(path) = std::env::var_os("STRATA_PHASES") {
            if let Err(e) = std::fs::write(&path, self.to_json()) {
                eprintln!(
                    "strata: writing phases to {}: {e}",
                    std::path::Path::new(&path).display()
                );
            }
        }
    }
}

/// This process's peak resident set: VmHWM of /proc/self/status, which belongs to the current address
/// space only. (wait4's ru_maxrss would also count the spawner's memory when it was started through
/// vfork/posix_spawn, whose shared address space becomes the "old mm" at exec.)
fn peak_rss_bytes() -> Option<u64> {
    use std::io::Read;
    // One read into a buffer that holds the whole file (~1.4 KiB): read_to_string of a file whose size
    // is reported as 0 probes with reads of 32, 32, 64 … bytes, 7 syscalls charged to every timed start.
    let mut buf = [0u8; 8192];
    let mut f = std::fs::File::open("/proc/self/status").ok()?;
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let status = std::str::from_utf8(&buf[..len]).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn phases_are_ordered_json() {
        let mut p = super::Phases::default();
        p.start("a");
        p.start("b");
        p.finish();
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        let ph = v["phases"].as_array().unwrap();
        assert_eq!(ph.len(), 2);
        assert_eq!(ph[0]["name"], "a");
        assert!(ph[0]["end_ns"].as_u64() <= ph[1]["start_ns"].as_u64());
        assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    }

    #[test]
    fn a_split_before_the_current_phase_began_splits_at_its_beginning() {
        let mut p = super::Phases::default();
        p.start("cgroup");
        p.start("rootfs");
        // The child's timestamp, taken before strata's cgroup work ended.
        p.split_at(1, "exec");
        p.finish();
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        let ph = v["phases"].as_array().unwrap();
        let span = |i: usize| {
            (
                ph[i]["start_ns"].as_u64().unwrap(),
                ph[i]["end_ns"].as_u64().unwrap(),
            )
        };
        assert_eq!(ph[1]["name"], "rootfs");
        assert_eq!(span(1).0, span(1).1, "rootfs is empty");
        assert_eq!(span(2).0, span(1).1, "exec begins where rootfs ended");
        assert!(
            span(0).1 <= span(2).0,
            "exec does not overlap the cgroup phase"
        );
    }
}
