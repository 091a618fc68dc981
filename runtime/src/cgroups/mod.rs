//! Container cgroups: detect v1 / hybrid / v2 at run time, create `<parent>/<name>` with limits,
//! attach processes, read stats, kill everything inside, remove.
//!
//! v1 and hybrid hosts go through cgroups-rs (the group is created in every v1 hierarchy). Pure v2
//! hosts go through [`v2`], a small writer over a root path of our choosing:
//! cgroups-rs 0.5's v2 code hard-codes `/sys/fs/cgroup` and enables controllers in the root's
//! `cgroup.subtree_control` (outside our parent, which we never touch), and a root path we choose lets
//! tests run the real v2 code against the hybrid host's unified mount and against a tempdir.

pub mod devices;
pub mod format;
mod v1;
mod v1_mounts;
pub mod v2;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The default parent cgroup of every container.
pub const DEFAULT_PARENT: &str = "strata";
/// Where cgroup file systems live.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The limits of one container. Device strings are "MAJ:MIN" or a block device path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Memory + swap in bytes (Docker's `--memory-swap`); -1 = unlimited swap.
    pub memory_swap: Option<i64>,
    /// CPU quota in CPUs (0.5 = half of one CPU), over a 100 ms period.
    pub cpus: Option<f64>,
    /// Relative CPU weight in v1 shares (2..=262144, default 1024); converted to cpu.weight on v2.
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on ("0-1,3").
    pub cpuset: Option<String>,
    /// Maximum number of processes; -1 = unlimited.
    pub pids: Option<i64>,
    /// Block IO weight 10..=1000 (v1 blkio scale); converted to io.weight on v2.
    pub io_weight: Option<u16>,
    /// Per-device read limits in bytes/s.
    pub device_read_bps: Vec<(String, u64)>,
    /// Per-device write limits in bytes/s.
    pub device_write_bps: Vec<(String, u64)>,
    /// Device access rules, in order (empty = leave the devices as the parent has them). Set when the
    /// cgroup is made: the v1 devices controller, or an eBPF device program on v2.
    pub devices: Vec<devices::DeviceRule>,
}

impl Resources {
    /// The limits of an OCI runtime spec's `linux.resources` that strata supports.
    pub fn from_oci(r: &oci_spec::runtime::LinuxResources) -> Resources {
        let mut out = Resources::default();
        if let Some(m) = r.memory() {
            out.memory = m.limit().filter(|l| *l > 0).map(|l| l as u64);
            out.memory_swap = m.swap();
        }
        if let Some(c) = r.cpu() {
            if let (Some(q), p) = (c.quota().filter(|q| *q > 0), c.period()) {
                let period = p.filter(|p| *p > 0).unwrap_or(format::CPU_PERIOD_US);
                out.cpus = Some(q as f64 / period as f64);
            }
            out.cpu_shares = c.shares().filter(|s| *s > 0);
            out.cpuset = c.cpus().clone().filter(|s| !s.is_empty());
        }
        if let Some(p) = r.pids() {
            // OCI: 0 means "not set", negative means unlimited.
            out.pids = Some(p.limit()).filter(|l| *l != 0);
        }
        if let Some(b) = r.block_io() {
            // Docker writes 0 for "not set", as it does for the other limits.
            out.io_weight = b.weight().filter(|w| *w > 0);
            let devs =
                |v: &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>| -> Vec<(String, u64)> {
                    v.iter()
                        .flatten()
                        .map(|d| (format!("{}:{}", d.major(), d.minor()), d.rate()))
                        .collect()
                };
            out.device_read_bps = devs(b.throttle_read_bps_device());
            out.device_write_bps = devs(b.throttle_write_bps_device());
        }
        out
    }

    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified (controllers stay on v1).
    Hybrid,
    /// One cgroup2 hierarchy at /sys/fs/cgroup.
    V2,
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
        })
    }
}

fn is_cgroup2(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Detects the host's cgroup mode (cheap: one or two statfs calls).
pub fn detect() -> CgroupMode {
    if is_cgroup2(CGROUP_ROOT) {
        CgroupMode::V2
    } else if is_cgroup2("/sys/fs/cgroup/unified") {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

/// The controllers usable for containers: v2 `cgroup.controllers`, or the mounted v1 hierarchies.
pub fn available_controllers() -> Vec<String> {
    match detect() {
        CgroupMode::V2 => {
            std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect()
        }
        _ => v1::mounted_controllers(),
    }
}

/// Errors of the cgroups module; each displays as one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid --{limit} value {value}: {reason}")]
    InvalidLimit {
        limit: &'static str,
        value: String,
        reason: String,
    },
    #[error("the kernel rejected --{limit} ({file} = {value:?}): {source}")]
    LimitRejected {
        limit: &'static str,
        file: String,
        value: String,
        source: io::Error,
    },
    #[error("--{limit} needs the cgroup controller {controller:?}, which is not available here")]
    ControllerUnavailable {
        controller: &'static str,
        limit: &'static str,
    },
    #[error("invalid device {device:?}: {reason}")]
    Device { device: String, reason: String },
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cgroup {path} already exists")]
    AlreadyExists { path: String },
    #[error("cgroup {path} does not exist")]
    NotFound { path: String },
    #[error("cgroup {path} still has processes after {waited_ms} ms")]
    NotEmpty { path: String, waited_ms: u64 },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cgroup {op} failed: {message}")]
    Backend { op: &'static str, message: String },
}

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// A snapshot of a container cgroup's counters. Missing counters (controller absent) read 0 / None.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupStats {
    /// Total CPU time of all tasks, in nanoseconds.
    pub cpu_usage_ns: u64,
    pub memory_usage_bytes: u64,
    /// None = unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// High-water mark (v1 max_usage_in_bytes, v2 memory.peak).
    pub memory_peak_bytes: Option<u64>,
    pub pids_current: u64,
    /// None = unlimited.
    pub pids_limit: Option<u64>,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// How many times the OOM killer killed a task of this cgroup.
    pub oom_kills: u64,
}

enum Backend {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

/// One container's cgroup `<parent>/<name>` (in every v1 hierarchy, or the one v2 hierarchy).
pub struct ContainerCgroup {
    rel: String,
    backend: Backend,
}

impl std::fmt::Debug for ContainerCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerCgroup")
            .field("path", &self.rel)
            .field("v2", &self.is_v2())
            .finish()
    }
}

/// Checks a relative cgroup path (parent may be nested: "a/b"; name must be one component).
fn check_rel(name: &str, allow_nested: bool) -> Result<()> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.starts_with('/') || name.ends_with('/') {
        return bad("must be a non-empty relative path");
    }
    for comp in name.split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return bad("must not contain empty, . or .. components");
        }
        if comp.contains(['\n', '\0']) {
            return bad("must not contain newlines or NUL");
        }
    }
    if !allow_nested && name.contains('/') {
        return bad("must be a single path component");
    }
    Ok(())
}

/// Limits made with a group but not written yet: [`ContainerCgroup::apply_pending`] writes them.
#[must_use = "the limits are not in force until apply_pending writes them"]
pub struct PendingLimits<'a>(Option<&'a Resources>);

impl ContainerCgroup {
    /// Creates `<parent>/<name>` with the given limits, before any task joins it. Invalid or
    /// rejected limits fail with an error naming the limit and leave nothing behind (the parent,
    /// ours, may stay).
    pub fn create(parent: &str, name: &str, res: &Resources) -> Result<ContainerCgroup> {
        check_rel(parent, true)?;
        check_rel(name, false)?;
        let rel = format!("{parent}/{name}");
        let backend = match detect() {
            CgroupMode::V2 => {
                v2::V2Cgroup::create(Path::new(CGROUP_ROOT), &rel, res).map(Backend::V2)
            }
            _ => v1::V1Cgroup::create(&rel, res).map(Backend::V1),
        }
        .map_err(|e| explain_cpuset(e, res))?;
        Ok(ContainerCgroup { rel, backend })
    }

    /// [`create`](Self::create) in two halves, for a child that joins its group while strata is still
    /// at work ([`crate::process::CgroupEntry::Late`]): on cgroup v1 this makes the group in every
    /// hierarchy (after validating `res`) and leaves the limits to [`apply_pending`](Self::apply_pending),
    /// which the caller runs before the container's command may start. On v2 the group is made with its
    /// limits here (a process joins a v2 group at clone3, after them) and nothing is pending.
    pub fn create_limits_pending<'a>(
        parent: &str,
        name: &str,
        res: &'a Resources,
    ) -> Result<(ContainerCgroup, PendingLimits<'a>)> {
        if detect() == CgroupMode::V2 {
            return Ok((Self::create(parent, name, res)?, PendingLimits(None)));
        }
        check_rel(parent, true)?;
        check_rel(name, false)?;
        let rel = format!("{parent}/{name}");
        let backend = Backend::V1(
            v1::V1Cgroup::create_unlimited(&rel, res).map_err(|e| explain_cpuset(e, res))?,
        );
        Ok((ContainerCgroup { rel, backend }, PendingLimits(Some(res))))
    }

    /// Writes the limits [`create_limits_pending`](Self::create_limits_pending) left pending. On
    /// failure the group stays for the caller to remove (it may hold a process by then).
    pub fn apply_pending(&self, pending: PendingLimits<'_>) -> Result<()> {
        match (&self.backend, pending.0) {
            (Backend::V1(c), Some(res)) => c.apply_limits(res).map_err(|e| explain_cpuset(e, res)),
            _ => Ok(()),
        }
    }

    /// Like [`create`](Self::create) but always on a cgroup2 hierarchy mounted at `root` (e.g. the
    /// hybrid host's /sys/fs/cgroup/unified, or a cgroup2 mount of a private mount namespace).
    pub fn create_v2_at(
        root: &Path,
        parent: &str,
        name: &str,
        res: &Resources,
    ) -> Result<ContainerCgroup> {
        check_rel(parent, true)?;
        check_rel(name, false)?;
        let rel = format!("{parent}/{name}");
        let backend = Backend::V2(v2::V2Cgroup::create(root, &rel, res)?);
        Ok(ContainerCgroup { rel, backend })
    }

    /// Opens an existing container cgroup (for exec, stats, kill, gc).
    pub fn open(parent: &str, name: &str) -> Result<ContainerCgroup> {
        check_rel(parent, true)?;
        check_rel(name, false)?;
        let rel = format!("{parent}/{name}");
        let backend = match detect() {
            CgroupMode::V2 => Backend::V2(v2::V2Cgroup::open(Path::new(CGROUP_ROOT), &rel)?),
            _ => Backend::V1(v1::V1Cgroup::open(&rel)?),
        };
        Ok(ContainerCgroup { rel, backend })
    }

    /// Like [`open`](Self::open) on a cgroup2 hierarchy mounted at `root`.
    pub fn open_v2_at(root: &Path, parent: &str, name: &str) -> Result<ContainerCgroup> {
        check_rel(parent, true)?;
        check_rel(name, false)?;
        let rel = format!("{parent}/{name}");
        let backend = Backend::V2(v2::V2Cgroup::open(root, &rel)?);
        Ok(ContainerCgroup { rel, backend })
    }

    /// The names of the container cgroups under `parent` (for gc and stats of everything).
    pub fn list(parent: &str) -> Result<Vec<String>> {
        check_rel(parent, true)?;
        let dir = match detect() {
            CgroupMode::V2 => Path::new(CGROUP_ROOT).join(parent),
            _ => v1::reference_dir(parent),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "list",
                    path: dir,
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// `<parent>/<name>`, relative to each hierarchy's root.
    pub fn rel_path(&self) -> &str {
        &self.rel
    }

    /// True for a cgroup on a v2 hierarchy.
    pub fn is_v2(&self) -> bool {
        matches!(self.backend, Backend::V2(_))
    }

    /// Moves process `pid` (all its threads) into the cgroup, in every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<()> {
        match &self.backend {
            Backend::V1(c) => c.add_task(pid),
            Backend::V2(c) => c.add_task(pid),
        }
    }

    /// The `cgroup.procs` files a process must write its pid to (or "0" for itself) to join this
    /// cgroup: one per v1 hierarchy, one on v2. `strata exec` writes them in its forked child.
    pub fn path_for_exec(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V1(c) => c.procs_files(),
            Backend::V2(c) => vec![c.dir().join("cgroup.procs")],
        }
    }

    /// An O_DIRECTORY fd of the v2 directory for clone3's CLONE_INTO_CGROUP; None on v1/hybrid.
    pub fn v2_dir_fd(&self) -> Option<OwnedFd> {
        match &self.backend {
            Backend::V1(_) => None,
            Backend::V2(c) => c.dir_fd().ok(),
        }
    }

    /// v1: each hierarchy's `tasks` file opened for writing, for a single-threaded child to join by
    /// writing "0" to each. Moving oneself as one thread skips the threadgroup lock whose write side
    /// waits for an RCU grace period (10–20 ms on a busy host), which writing another process's pid takes
    /// (to cgroup.procs, and to tasks too: only a thread moving itself skips it; ~10 ms measured here).
    /// On v2, cgroup.procs, for the one child that cannot be cloned into its cgroup (see
    /// `ChildPlan::child_opens_dev_fuse`); the others start there through clone3's CLONE_INTO_CGROUP.
    pub fn self_join_fds(&self) -> Result<Vec<OwnedFd>> {
        let files = match &self.backend {
            Backend::V1(c) => c.tasks_files(),
            Backend::V2(c) => vec![c.dir().join("cgroup.procs")],
        };
        files
            .into_iter()
            .map(|path| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|source| CgroupError::Io {
                        op: "open",
                        path,
                        source,
                    })
            })
            .collect()
    }

    /// The process ids in the cgroup (any hierarchy), sorted.
    pub fn procs(&self) -> Vec<i32> {
        match &self.backend {
            Backend::V1(c) => c.procs(),
            Backend::V2(c) => c.procs(),
        }
    }

    /// Current counters.
    pub fn stats(&self) -> Result<CgroupStats> {
        match &self.backend {
            Backend::V1(c) => c.stats(),
            Backend::V2(c) => c.stats(),
        }
    }

    /// True if the OOM killer has killed a task of this cgroup.
    pub fn oom_killed(&self) -> bool {
        self.stats().is_ok_and(|s| s.oom_kills > 0)
    }

    /// Kills every process in the cgroup and waits until it is empty (cgroup.kill on v2; on v1
    /// freeze → SIGKILL all → thaw, repeated until empty, so a forking process cannot escape).
    pub fn kill_all(&self) -> Result<()> {
        match &self.backend {
            Backend::V1(c) => c.kill_all(),
            Backend::V2(c) => c.kill_all(),
        }
    }

    /// True when the cgroup is frozen (v1 freezer state FROZEN or FREEZING, v2 cgroup.freeze = 1).
    pub fn is_frozen(&self) -> bool {
        let file = match &self.backend {
            Backend::V1(_) => Path::new(CGROUP_ROOT)
                .join("freezer")
                .join(&self.rel)
                .join("freezer.state"),
            Backend::V2(c) => c.dir().join("cgroup.freeze"),
        };
        read_opt(&file).is_some_and(|s| {
            let s = s.trim();
            s == "FROZEN" || s == "FREEZING" || s == "1"
        })
    }

    /// Freezes (`true`) or thaws every process of the cgroup: the v1 freezer, or cgroup.freeze on v2.
    ///
    /// A freeze returns once every process has stopped, as runc's does: the kernel freezes
    /// asynchronously (v1's freezer.state reads FREEZING meanwhile, v2's cgroup.events `frozen 0`), and a
    /// `pause` that returned earlier left `docker pause` showing a container still running code. One
    /// that has not stopped within 2 s is thawed again and the freeze fails.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let set = |frozen: bool| match &self.backend {
            Backend::V1(c) => c.set_frozen(frozen),
            Backend::V2(c) => c.set_frozen(frozen),
        };
        set(frozen)?;
        if !frozen {
            return Ok(());
        }
        let waited = wait_until(std::time::Duration::from_secs(2), || {
            let done = self.fully_frozen();
            if !done {
                // v1 freezes only the tasks it finds at the write: writing again catches the rest
                // (new children, tasks that were in a vfork), as runc does.
                let _ = set(true);
            }
            done
        });
        waited.map_err(|waited_ms| {
            let _ = set(false);
            CgroupError::Backend {
                op: "freeze",
                message: format!("its processes had not all stopped after {waited_ms} ms; thawed"),
            }
        })
    }

    /// Every process of the cgroup is stopped (not only asked to stop).
    fn fully_frozen(&self) -> bool {
        match &self.backend {
            Backend::V1(_) => read_opt(
                &Path::new(CGROUP_ROOT)
                    .join("freezer")
                    .join(&self.rel)
                    .join("freezer.state"),
            )
            .is_some_and(|s| s.trim() == "FROZEN"),
            Backend::V2(c) => read_opt(&c.dir().join("cgroup.events"))
                .is_some_and(|s| s.lines().any(|l| l.trim() == "frozen 1")),
        }
    }

    /// Changes the limits of a live cgroup (OCI `update`, `docker update`): the limits `res` sets are
    /// written, the others stay as they are.
    pub fn update(&self, res: &Resources) -> Result<()> {
        match &self.backend {
            Backend::V1(c) => c.update(res),
            Backend::V2(c) => c.update(res),
        }
        .map_err(|e| explain_cpuset(e, res))
    }

    /// Removes the (empty) cgroup from every hierarchy, retrying EBUSY briefly. The parent stays.
    pub fn remove(self) -> Result<()> {
        match self.backend {
            Backend::V1(c) => c.remove(),
            Backend::V2(c) => c.remove(),
        }
    }
}

/// The kernel answers a `--cpuset` naming a CPU the host does not have with a bare ERANGE or EINVAL:
/// name the CPU instead when that is why.
fn explain_cpuset(e: CgroupError, res: &Resources) -> CgroupError {
    if let (
        CgroupError::LimitRejected {
            limit: "cpuset", ..
        },
        Some(set),
        Some(online),
    ) = (
        &e,
        &res.cpuset,
        read_opt(Path::new("/sys/devices/system/cpu/online")),
    ) && let Err(named) = format::check_cpuset_online(set, &online)
    {
        return named;
    }
    e
}

/// Polls `empty` until it returns true, for at most `limit`; how long it waited in ms on failure.
fn wait_until(limit: std::time::Duration, mut empty: impl FnMut() -> bool) -> Result<(), u64> {
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(200);
    loop {
        if empty() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(start.elapsed().as_millis() as u64);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

/// Reads a whole cgroup file; None if it does not exist (controller absent).
fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ContainerCgroup>();
        send_sync::<CgroupError>();
    }

    #[test]
    fn names_are_checked() {
        check_rel("strata", true).unwrap();
        check_rel("strata/sub", true).unwrap();
        for bad in ["", "/abs", "a/../b", "a//b", "..", "a/", "x\ny"] {
            assert!(check_rel(bad, true).is_err(), "{bad:?}");
        }
        assert!(check_rel("a/b", false).is_err());
    }

    #[test]
    fn from_oci_maps_limits() {
        use oci_spec::runtime::*;
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .swap(-1i64)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(512u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(300u16)
                    .throttle_write_bps_device(vec![
                        LinuxThrottleDeviceBuilder::default()
                            .major(8i64)
                            .minor(0i64)
                            .rate(1000u64)
                            .build()
                            .unwrap(),
                    ])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let r = Resources::from_oci(&res);
        assert_eq!(r.memory, Some(64 << 20));
        assert_eq!(r.memory_swap, Some(-1));
        assert_eq!(r.cpus, Some(0.5));
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpuset.as_deref(), Some("0"));
        assert_eq!(r.pids, Some(20));
        assert_eq!(r.io_weight, Some(300));
        assert_eq!(r.device_write_bps, vec![("8:0".to_string(), 1000)]);
        assert!(Resources::from_oci(&LinuxResources::default()).is_empty());
    }
}
