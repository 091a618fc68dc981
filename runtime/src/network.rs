//! Container networking: loopback up in a fresh net namespace (an ioctl, no process), and bridge
//! mode: a veth pair with a private /30 from 10.213.0.0/16, the container end as eth0 in the
//! container's net namespace with a default route to the host end, and an optional tc rate limit
//! in both directions. Bridge mode uses iproute2 (`ip`, `tc`); it is not on the default start path.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use nix::fcntl::OFlag;

/// Where address leases live: one file per /30, created with O_EXCL so concurrent strata
/// processes never hand out the same subnet. Addresses are machine-wide, so this is one fixed
/// place, outside the (overridable) state root whose entries are containers.
pub const LEASE_DIR: &str = "/run/strata-net";
/// The strata-owned range: 10.213.0.0/16, cut into 16384 /30 subnets.
pub const SUBNET_BASE: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 0);
pub const SUBNETS: u32 = 1 << 14;
/// The container end's name inside its namespace.
pub const CONTAINER_IF: &str = "eth0";
/// Host-side veth names start with this (then 12 hex digits: 15 chars, the kernel's limit).
pub const HOST_IF_PREFIX: &str = "stv";
/// A lease whose veth is gone is reclaimed only after this age (setup may be in progress).
const STALE_LEASE_AGE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot bring the loopback interface up: {0}")]
    Loopback(io::Error),
    #[error("cannot make the container's network namespace (loopback up): {0}")]
    NewNetns(io::Error),
    #[error("cannot open the network namespace of pid {pid}: {source}")]
    Netns { pid: i32, source: io::Error },
    #[error("cannot run {tool}: {source} (bridge networking needs iproute2)")]
    Spawn { tool: String, source: io::Error },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("no free /30 left in 10.213.0.0/16 (leases in {LEASE_DIR})")]
    NoAddress,
    #[error(
        "invalid network rate {0:?}: expected e.g. 10mbit, 1MB, 500kB or a byte count per second"
    )]
    BadRate(String),
    #[error("invalid container id {0:?} for networking")]
    BadId(String),
    #[error("bridge networking needs pid {0} in its own network namespace, but it shares strata's")]
    SharedNetns(i32),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

pub type Result<T, E = NetworkError> = std::result::Result<T, E>;

/// Brings `lo` up in the calling thread's network namespace (a fresh one has it down).
pub fn loopback_up() -> Result<()> {
    crate::sys::set_interface_up("lo").map_err(NetworkError::Loopback)
}

/// Brings `lo` up in the network namespace of process `pid`, from outside it (the calling thread
/// returns to its own namespace).
pub fn loopback_up_in(pid: i32) -> Result<()> {
    use std::os::fd::AsFd;
    let open = |p: String| std::fs::File::open(p).map_err(NetworkError::Loopback);
    let own = open("/proc/thread-self/ns/net".to_string())?;
    let target = open(format!("/proc/{pid}/ns/net"))?;
    crate::sys::set_interface_up_in(target.as_fd(), own.as_fd(), "lo")
        .map_err(NetworkError::Loopback)
}

/// A new network namespace with its loopback up, for a container process to enter; the calling thread
/// makes it and comes back to its own.
pub fn new_netns_with_loopback() -> Result<OwnedFd> {
    use std::os::fd::AsFd;
    let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(NetworkError::NewNetns)?;
    crate::sys::new_netns_with_loopback(own.as_fd()).map_err(NetworkError::NewNetns)
}

/// True if interface `name` is up in the calling thread's network namespace.
pub fn interface_is_up(name: &str) -> io::Result<bool> {
    Ok(crate::sys::interface_flags(name)? & libc::IFF_UP != 0)
}

/// Parses a rate into bytes per second: a plain number is bytes/s; `bit` suffixes count bits
/// (tc style: kbit, mbit, gbit); `B` suffixes count bytes (kB, MB, GB decimal; KiB, MiB, GiB).
pub fn parse_rate(text: &str) -> Result<u64> {
    let bad = || NetworkError::BadRate(text.to_string());
    let t = text.trim().trim_end_matches("/s");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim() {
        "" | "B" | "b" | "bps" => 1.0,
        "k" | "kB" | "KB" => 1e3,
        "m" | "M" | "mB" | "MB" => 1e6,
        "g" | "G" | "gB" | "GB" => 1e9,
        "KiB" | "K" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "bit" => 1.0 / 8.0,
        "kbit" | "Kbit" => 1e3 / 8.0,
        "mbit" | "Mbit" => 1e6 / 8.0,
        "gbit" | "Gbit" => 1e9 / 8.0,
        _ => return Err(bad()),
    };
    let bytes = (n * mult).round();
    // tc cannot shape below ~1 kbit/s meaningfully.
    if !bytes.is_finite() || bytes < 125.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// FNV-1a: a stable hash (veth names must be the same in every strata build for gc).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The host and container addresses of /30 number `index`.
pub fn subnet_addresses(index: u32) -> (Ipv4Addr, Ipv4Addr) {
    let net = u32::from(SUBNET_BASE) + index * 4;
    (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2))
}

/// The host-side veth name for lease `index` of container `id` (15 chars).
pub fn host_if_name(index: u32, id: &str) -> String {
    format!("{HOST_IF_PREFIX}{index:04x}{:08x}", fnv1a(id))
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NetworkError + 'a {
    move |source| NetworkError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// True if a network interface `name` exists in the host (strata's own) network namespace.
fn host_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// One leased /30: its lease file is removed when the bridge is torn down.
struct Lease {
    index: u32,
    path: PathBuf,
}

impl Lease {
    /// Takes the first free /30 at or after a start derived from `id`.
    fn acquire(dir: &Path, id: &str) -> Result<Lease> {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let start = fnv1a(id) % SUBNETS;
        for i in 0..SUBNETS {
            let index = (start + i) % SUBNETS;
            let path = dir.join(index.to_string());
            for _attempt in 0..2 {
                match OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut f) => {
                        f.write_all(format!("{id}\n{}\n", host_if_name(index, id)).as_bytes())
                            .map_err(io_err("write", &path))?;
                        return Ok(Lease { index, path });
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !Self::reclaim_if_stale(&path) {
                            break;
                        }
                    }
                    Err(e) => return Err(io_err("create", &path)(e)),
                }
            }
        }
        Err(NetworkError::NoAddress)
    }

    /// Removes a lease whose veth is gone and that is old enough not to be a setup in progress.
    fn reclaim_if_stale(path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let veth = text.lines().nth(1).unwrap_or("");
        let old = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| {
                SystemTime::now().duration_since(t).unwrap_or_default() > STALE_LEASE_AGE
            });
        if !veth.is_empty() && !host_link_exists(veth) && old {
            return std::fs::remove_file(path).is_ok();
        }
        false
    }

    fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Finds `ip`/`tc` in the usual places even when PATH lacks the sbin directories.
fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// Runs `tool -batch -` with `script` on stdin, in `netns` if given.
fn run_batch(name: &str, script: &str, netns: Option<OwnedFd>) -> Result<()> {
    let mut cmd = Command::new(tool(name));
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(fd) = netns {
        crate::sys::command_in_netns(&mut cmd, fd);
    }
    let spawn_err = |source| NetworkError::Spawn {
        tool: name.to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            command: format!("{name} {}", script.trim().replace('\n', "; ")),
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; "),
        });
    }
    Ok(())
}

fn open_netns(pid: i32) -> Result<OwnedFd> {
    nix::fcntl::open(
        format!("/proc/{pid}/ns/net").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| NetworkError::Netns {
        pid,
        source: e.into(),
    })
}

/// A tc token bucket on `dev` at `rate` bytes/s. The bucket holds 50 ms of traffic (at least
/// 16 KiB); tbf segments larger GSO packets, so a small bucket stays exact.
fn tbf_line(dev: &str, rate: u64) -> String {
    let burst = (rate / 20).max(16 * 1024);
    format!(
        "qdisc add dev {dev} root tbf rate {}bit burst {burst} latency 100ms\n",
        rate * 8
    )
}

/// A container's bridge-mode network: the host end `host_if` with `host_ip`, and eth0 with
/// `container_ip` inside the container's namespace (a /30 each).
#[derive(Debug)]
pub struct Bridge {
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub container_ip: Ipv4Addr,
    /// The rate limit in bytes/s applied in both directions, if any.
    pub rate: Option<u64>,
    lease_path: PathBuf,
}

impl Bridge {
    /// Sets up the veth pair for container `id` whose init is `child_pid` (already in its own
    /// net namespace). On failure nothing is left behind.
    pub fn setup(id: &str, child_pid: i32, rate: Option<u64>) -> Result<Bridge> {
        Self::setup_with_leases(Path::new(LEASE_DIR), id, child_pid, rate)
    }

    /// [`setup`](Self::setup) with the leases kept in `lease_dir`.
    pub fn setup_with_leases(
        lease_dir: &Path,
        id: &str,
        child_pid: i32,
        rate: Option<u64>,
    ) -> Result<Bridge> {
        if id.is_empty() || id.contains(['/', '\n', '\0']) {
            return Err(NetworkError::BadId(id.to_string()));
        }
        if let Some(r) = rate
            && r < 125
        {
            return Err(NetworkError::BadRate(r.to_string()));
        }
        // Open the namespace first: a dead pid fails before anything is created.
        let netns = open_netns(child_pid)?;
        // Never configure our own namespace as the container's (that would add a default route
        // and an eth0 to the host).
        let ours = std::fs::metadata("/proc/self/ns/net")
            .map_err(io_err("stat", Path::new("/proc/self/ns/net")))?;
        let theirs = nix::sys::stat::fstat(&netns).map_err(|e| NetworkError::Netns {
            pid: child_pid,
            source: e.into(),
        })?;
        {
            use std::os::unix::fs::MetadataExt;
            if ours.ino() == theirs.st_ino && ours.dev() == theirs.st_dev {
                return Err(NetworkError::SharedNetns(child_pid));
            }
        }
        let lease = Lease::acquire(lease_dir, id)?;
        let host_if = host_if_name(lease.index, id);
        let (host_ip, container_ip) = subnet_addresses(lease.index);
        let bridge = Bridge {
            host_if,
            host_ip,
            container_ip,
            rate,
            lease_path: lease.path.clone(),
        };
        match bridge.configure(child_pid, netns) {
            Ok(()) => Ok(bridge),
            Err(e) => {
                let _ = run_batch("ip", &format!("link del {}\n", bridge.host_if), None);
                lease.release();
                Err(e)
            }
        }
    }

    fn configure(&self, child_pid: i32, netns: OwnedFd) -> Result<()> {
        use std::os::fd::AsRawFd;
        let h = &self.host_if;
        // The peer is created directly inside the container's namespace, so it can be eth0 there.
        // The namespace is named by our open fd (ip opens a path containing '/' as is), not by the
        // pid, which could be recycled by now.
        let ns_path = format!("/proc/{}/fd/{}", std::process::id(), netns.as_raw_fd());
        let host = format!(
            "link add {h} type veth peer name {CONTAINER_IF} netns {ns_path}\n\
             addr add {}/30 dev {h}\n\
             link set {h} up\n",
            self.host_ip
        );
        let inside = format!(
            "link set lo up\n\
             addr add {}/30 dev {CONTAINER_IF}\n\
             link set {CONTAINER_IF} up\n\
             route add default via {}\n",
            self.container_ip, self.host_ip
        );
        run_batch("ip", &host, None)?;
        if let Some(rate) = self.rate {
            // Egress of the host end = what the container receives.
            run_batch("tc", &tbf_line(h, rate), None)?;
        }
        let netns2 = netns.try_clone().map_err(|source| NetworkError::Netns {
            pid: child_pid,
            source,
        })?;
        run_batch("ip", &inside, Some(netns))?;
        if let Some(rate) = self.rate {
            // Egress of eth0 = what the container sends.
            run_batch("tc", &tbf_line(CONTAINER_IF, rate), Some(netns2))?;
        }
        Ok(())
    }

    /// Deletes the host end (which deletes the pair) and releases the address lease. A veth
    /// already gone with its namespace is fine.
    pub fn teardown(self) -> Result<()> {
        let result = if host_link_exists(&self.host_if) {
            match run_batch("ip", &format!("link del {}\n", self.host_if), None) {
                Err(_) if !host_link_exists(&self.host_if) => Ok(()),
                r => r,
            }
        } else {
            Ok(())
        };
        let _ = std::fs::remove_file(&self.lease_path);
        result
    }

    /// Tears down whatever bridge container `id` still has (for gc after a crash of strata).
    pub fn teardown_by_id(id: &str) -> Result<()> {
        Self::teardown_by_id_in(Path::new(LEASE_DIR), id)
    }

    /// [`teardown_by_id`](Self::teardown_by_id) with the leases kept in `lease_dir`.
    pub fn teardown_by_id_in(lease_dir: &Path, id: &str) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(lease_dir) else {
            return Ok(());
        };
        for e in entries.filter_map(|e| e.ok()) {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let mut lines = text.lines();
            if lines.next() != Some(id) {
                continue;
            }
            let host_if = lines.next().unwrap_or("").to_string();
            if host_if.starts_with(HOST_IF_PREFIX) && host_link_exists(&host_if) {
                run_batch("ip", &format!("link del {host_if}\n"), None)?;
            }
            let _ = std::fs::remove_file(e.path());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert_eq!(parse_rate("8mbit").unwrap(), 1_000_000);
        assert_eq!(parse_rate("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_rate("1MiB/s").unwrap(), 1 << 20);
        assert_eq!(parse_rate("500kB").unwrap(), 500_000);
        assert_eq!(parse_rate("1.5m").unwrap(), 1_500_000);
        for bad in ["", "fast", "10 furlongs", "1bit", "-5"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_addresses() {
        let n = host_if_name(SUBNETS - 1, "some-container");
        assert!(n.len() <= 15 && n.starts_with("stv3fff"), "{n}");
        assert_eq!(
            subnet_addresses(0),
            (Ipv4Addr::new(10, 213, 0, 1), Ipv4Addr::new(10, 213, 0, 2))
        );
        assert_eq!(
            subnet_addresses(SUBNETS - 1),
            (
                Ipv4Addr::new(10, 213, 255, 253),
                Ipv4Addr::new(10, 213, 255, 254)
            )
        );
    }

    #[test]
    fn leases_never_collide() {
        let t = tempfile::tempdir().unwrap();
        let a = Lease::acquire(t.path(), "same").unwrap();
        let b = Lease::acquire(t.path(), "same").unwrap();
        assert_ne!(a.index, b.index);
        let ai = a.index;
        a.release();
        let c = Lease::acquire(t.path(), "same").unwrap();
        assert_eq!(c.index, ai);
        // A lease whose veth is gone but which is fresh is not reclaimed.
        assert!(!Lease::reclaim_if_stale(&c.path));
        b.release();
        c.release();
    }

    #[test]
    fn tbf_burst_has_a_floor() {
        assert_eq!(
            tbf_line("x", 1000),
            "qdisc add dev x root tbf rate 8000bit burst 16384 latency 100ms\n"
        );
        assert!(tbf_line("x", 10_000_000).contains("burst 500000"));
    }
}
