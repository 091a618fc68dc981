//! The cgroup v1 (and hybrid) backend on cgroups-rs: the group exists in every mounted v1
//! hierarchy. Limits are set one by one through the controllers (not `Cgroup::apply`, which drops
//! some write errors silently) so a rejected value is reported naming its limit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::blkio::BlkIoController;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::devices::DevicesController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, ControllIdentifier, Controller, MaxValue, Subsystem};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::format::{self, CPU_PERIOD_US};
use super::v1_mounts;
use super::{CgroupError, CgroupStats, Resources, Result, read_opt, wait_until};

const KILL_DEADLINE: Duration = Duration::from_secs(10);

pub struct V1Cgroup {
    cg: Cgroup,
}

/// Names of the mounted v1 controllers (for `strata info`).
pub fn mounted_controllers() -> Vec<String> {
    let mut v: Vec<String> = v1_mounts::discover()
        .subsystems()
        .iter()
        .map(|s| s.controller_name())
        // Named hierarchies (name=systemd) carry no controller.
        .filter(|n| !n.starts_with("name="))
        .collect();
    v.sort();
    v
}

/// A directory whose subdirectories are the container cgroups under `parent` (pids hierarchy,
/// else memory, else cpu).
pub fn reference_dir(parent: &str) -> PathBuf {
    let v1 = v1_mounts::discover();
    ["pids", "memory", "cpu"]
        .into_iter()
        .find_map(|c| v1_mounts::mount_point(v1.as_ref(), c))
        .map(|point| point.join(parent))
        .unwrap_or_else(|| Path::new(super::CGROUP_ROOT).join("pids").join(parent))
}

/// Current kernels set blk-throttle up on a disk's queue only when a first throttle rule names that disk,
/// and v1 counts a group's IO (`blkio.throttle.io_service_bytes`, what `strata stats` reads) only on
/// queues where it is set up: without this, a host where nobody ever throttled shows 0 bytes for every
/// container. A no-limit rule ("MAJ:MIN 0", which stores nothing) sets the queue up without limiting
/// anything. Best effort: a disk that refuses it only loses its IO figures. Virtual block devices
/// (loop, ram, zram, nbd) and optical/floppy drives are left alone.
fn enable_io_accounting(blkio_dir: &Path) {
    let Ok(disks) = std::fs::read_dir("/sys/block") else {
        return;
    };
    let file = blkio_dir.join("blkio.throttle.write_bps_device");
    for disk in disks.flatten() {
        let name = disk.file_name();
        let name = name.to_string_lossy();
        if ["loop", "ram", "zram", "nbd", "sr", "fd"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        if let Some(dev) = read_opt(&disk.path().join("dev")) {
            let _ = std::fs::write(&file, format!("{} 0", dev.trim()));
        }
    }
}

/// Makes the parent of `cg` in every hierarchy, the first time a container is made under it:
/// - cpuset: `cgroup.clone_children`, so each container's cpuset starts with the parent's CPUs and memory
///   nodes (without it a new cpuset is empty, and cgroups-rs reads both files of the parent and writes
///   them into the child: a dozen syscalls more on every start);
/// - blkio: IO accounting on the host's disks (see [`enable_io_accounting`]; it is set up per disk
///   queue, so once serves every container, and the containers' own throttle rules stay untouched).
///
/// Best effort: a failure here costs speed or IO figures only; creating the container reports errors.
fn make_parent(cg: &Cgroup) {
    for s in cg.subsystems() {
        let Some(parent) = s.to_controller().path().parent() else {
            continue;
        };
        if std::fs::create_dir_all(parent).is_err() {
            continue;
        }
        match s {
            Subsystem::CpuSet(_) => {
                let _ = std::fs::write(parent.join("cgroup.clone_children"), "1");
            }
            Subsystem::BlkIo(_) => enable_io_accounting(parent),
            _ => {}
        }
    }
}

/// The io::Error under a cgroups-rs error, if any (its Display is a Debug dump).
fn rejected(
    limit: &'static str,
    file: &str,
    value: impl ToString,
    e: cgroups_rs::fs::error::Error,
) -> CgroupError {
    let value = value.to_string();
    let io = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(|io| std::io::Error::from_raw_os_error(io.raw_os_error().unwrap_or(libc::EIO)));
    match io {
        Some(source) if source.raw_os_error() == Some(libc::ENOENT) => {
            CgroupError::ControllerUnavailable {
                controller: limit_controller(limit),
                limit,
            }
        }
        Some(source) => CgroupError::LimitRejected {
            limit,
            file: file.to_string(),
            value,
            source,
        },
        None => CgroupError::Backend {
            op: "write",
            message: format!("{file} = {value}: {}", e.kind()),
        },
    }
}

fn limit_controller(limit: &'static str) -> &'static str {
    match limit {
        "memory" | "memory-swap" => "memory",
        "cpus" | "cpu-shares" => "cpu",
        "cpuset" => "cpuset",
        "pids" => "pids",
        "freeze" => "freezer",
        "device-rule" => "devices",
        _ => "blkio",
    }
}

fn backend(op: &'static str, e: cgroups_rs::fs::error::Error) -> CgroupError {
    let cause = std::error::Error::source(&e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    CgroupError::Backend {
        op,
        message: format!("{}{cause}", e.kind()),
    }
}

impl V1Cgroup {
    fn controller<'a, T>(&'a self, limit: &'static str) -> Result<&'a T>
    where
        &'a T: From<&'a Subsystem>,
        T: Controller + ControllIdentifier,
    {
        self.cg
            .controller_of::<T>()
            .ok_or(CgroupError::ControllerUnavailable {
                controller: limit_controller(limit),
                limit,
            })
    }

    pub fn create(rel: &str, res: &Resources) -> Result<V1Cgroup> {
        let (me, throttles) = Self::create_dirs(rel, res)?;
        if let Err(e) = me.apply(res, &throttles) {
            let _ = me.cg.delete();
            return Err(e);
        }
        Ok(me)
    }

    /// Writes every limit of `res` (the second half of [`create`](Self::create)).
    pub fn apply_limits(&self, res: &Resources) -> Result<()> {
        self.apply(res, &format::resolve_throttles(res)?)
    }

    /// Validates `res` and makes the group in every hierarchy, without writing any limit yet.
    pub fn create_unlimited(rel: &str, res: &Resources) -> Result<V1Cgroup> {
        Self::create_dirs(rel, res).map(|(me, _)| me)
    }

    /// Validates `res` (returning its IO throttles with their devices resolved) and makes the group in
    /// every hierarchy.
    fn create_dirs(rel: &str, res: &Resources) -> Result<(V1Cgroup, format::Throttles)> {
        // Validate with the same rules as v2 (and resolve devices) before creating anything.
        format::v2_writes(res)?;
        let throttles = format::resolve_throttles(res)?;
        // In every hierarchy, also those without a limit: the container's cgroup namespace and its
        // /sys/fs/cgroup then show its own group everywhere, never the host's root.
        let cg = Cgroup::load(v1_mounts::discover(), rel);
        // One stat instead of one per hierarchy (this is on every container start); a group left
        // half-created by a crash is reused, which is harmless.
        let first = cg
            .subsystems()
            .first()
            .map(|s| s.to_controller().path().to_path_buf());
        if first.as_ref().is_some_and(|p| p.exists()) {
            return Err(CgroupError::AlreadyExists {
                path: rel.to_string(),
            });
        }
        if first
            .as_ref()
            .and_then(|p| p.parent())
            .is_some_and(|p| !p.exists())
        {
            make_parent(&cg);
        }
        let me = V1Cgroup { cg };
        if let Err(e) = me.cg.create() {
            let _ = me.cg.delete();
            return Err(backend("create", e));
        }
        Ok((me, throttles))
    }

    /// Opens the group in the hierarchies where it exists (which depend on the limits it was made with).
    pub fn open(rel: &str) -> Result<V1Cgroup> {
        let hierarchies = v1_mounts::discover();
        let present: Vec<String> = hierarchies
            .subsystems()
            .iter()
            .filter(|s| s.to_controller().path().join(rel).is_dir())
            .map(|s| s.controller_name())
            .collect();
        if present.is_empty() {
            return Err(CgroupError::NotFound {
                path: rel.to_string(),
            });
        }
        let cg = Cgroup::load_with_specified_controllers(hierarchies, rel, present);
        Ok(V1Cgroup { cg })
    }

    pub fn update(&self, res: &Resources) -> Result<()> {
        format::v2_writes(res)?;
        let throttles = format::resolve_throttles(res)?;
        if res.memory.is_some() && res.memory_swap.is_some() {
            // memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes: raising both needs the
            // memsw limit first, lowering both the memory limit first. Try the swap limit alone first;
            // when that is refused (it would go below the current memory limit), the full apply below
            // lowers memory before memsw.
            let swap_only = Resources {
                memory_swap: res.memory_swap,
                ..Default::default()
            };
            let _ = self.apply(&swap_only, &format::resolve_throttles(&swap_only)?);
        }
        self.apply(res, &throttles)
    }

    fn apply(&self, res: &Resources, throttles: &format::Throttles) -> Result<()> {
        if let Some(m) = res.memory {
            let mem: &MemController = self.controller("memory")?;
            mem.set_limit(m as i64)
                .map_err(|e| rejected("memory", "memory.limit_in_bytes", m, e))?;
        }
        if let Some(swap) = res.memory_swap {
            let mem: &MemController = self.controller("memory-swap")?;
            // v1's memsw limit is memory+swap, as Docker's flag; unlimited is -1.
            let v = if swap < 0 { -1 } else { swap };
            mem.set_memswap_limit(v)
                .map_err(|e| rejected("memory-swap", "memory.memsw.limit_in_bytes", v, e))?;
        }
        if let Some(cpus) = res.cpus {
            let quota = format::cpu_quota_us(cpus)?;
            let cpu: &CpuController = self.controller("cpus")?;
            cpu.set_cfs_period(CPU_PERIOD_US)
                .map_err(|e| rejected("cpus", "cpu.cfs_period_us", CPU_PERIOD_US, e))?;
            cpu.set_cfs_quota(quota as i64)
                .map_err(|e| rejected("cpus", "cpu.cfs_quota_us", quota, e))?;
        }
        if let Some(shares) = res.cpu_shares {
            let cpu: &CpuController = self.controller("cpu-shares")?;
            cpu.set_shares(shares)
                .map_err(|e| rejected("cpu-shares", "cpu.shares", shares, e))?;
        }
        if let Some(set) = &res.cpuset {
            let cs: &CpuSetController = self.controller("cpuset")?;
            cs.set_cpus(set)
                .map_err(|e| rejected("cpuset", "cpuset.cpus", set, e))?;
        }
        if let Some(p) = res.pids {
            let pids: &PidController = self.controller("pids")?;
            let v = if p < 0 {
                MaxValue::Max
            } else {
                MaxValue::Value(p)
            };
            pids.set_pid_max(v)
                .map_err(|e| rejected("pids", "pids.max", p, e))?;
        }
        if res.io_weight.is_some() || !throttles.is_empty() {
            let blk: &BlkIoController = self.controller("io-weight")?;
            if let Some(w) = res.io_weight {
                // CFQ's blkio.weight is gone from current kernels; BFQ offers blkio.bfq.weight.
                let file = ["blkio.bfq.weight", "blkio.weight"]
                    .into_iter()
                    .find(|f| blk.path().join(f).exists())
                    .ok_or(CgroupError::ControllerUnavailable {
                        controller: "blkio (BFQ weight)",
                        limit: "io-weight",
                    })?;
                super::v2::write_file(&blk.path().join(file), &w.to_string()).map_err(
                    |source| CgroupError::LimitRejected {
                        limit: "io-weight",
                        file: file.to_string(),
                        value: w.to_string(),
                        source,
                    },
                )?;
            }
            for (dev, (r, w)) in throttles {
                if let Some(r) = r {
                    blk.throttle_read_bps_for_device(dev.major, dev.minor, *r)
                        .map_err(|e| {
                            rejected("device-read-bps", "blkio.throttle.read_bps_device", dev, e)
                        })?;
                }
                if let Some(w) = w {
                    blk.throttle_write_bps_for_device(dev.major, dev.minor, *w)
                        .map_err(|e| {
                            rejected(
                                "device-write-bps",
                                "blkio.throttle.write_bps_device",
                                dev,
                                e,
                            )
                        })?;
                }
            }
        }
        if !res.devices.is_empty() {
            let dev: &DevicesController = self.controller("device-rule")?;
            super::devices::write_v1(dev.path(), &res.devices)?;
        }
        Ok(())
    }

    pub fn add_task(&self, pid: i32) -> Result<()> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(pid as u64))
            .map_err(|e| backend("add task", e))
    }

    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.cg
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().join("cgroup.procs"))
            .collect()
    }

    pub fn tasks_files(&self) -> Vec<PathBuf> {
        self.cg
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().join("tasks"))
            .collect()
    }

    pub fn procs(&self) -> Vec<i32> {
        self.cg.procs().into_iter().map(|p| p.pid as i32).collect()
    }

    fn file<T>(&self, name: &str) -> Option<String>
    where
        for<'a> &'a T: From<&'a Subsystem>,
        T: Controller + ControllIdentifier,
    {
        let c = self.cg.controller_of::<T>()?;
        read_opt(&c.path().join(name))
    }

    pub fn stats(&self) -> Result<CgroupStats> {
        if !self.cg.exists() {
            return Err(CgroupError::NotFound {
                path: self.cg.path().to_string(),
            });
        }
        let num = |t: Option<String>| t.and_then(|t| t.trim().parse::<u64>().ok());
        let limit = num(self.file::<MemController>("memory.limit_in_bytes"))
            .filter(|l| !format::v1_unlimited(*l));
        let oom = self
            .file::<MemController>("memory.oom_control")
            .map(|t| format::parse_flat_keyed(&t))
            .unwrap_or_default();
        let io_files = [
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.bfq.io_service_bytes_recursive",
        ]
        .map(|f| self.file::<BlkIoController>(f).unwrap_or_default());
        let (io_read_bytes, io_write_bytes) =
            format::io_service_bytes_v1(&io_files.each_ref().map(String::as_str));
        let pids_limit = self
            .file::<PidController>("pids.max")
            .and_then(|t| format::parse_max(&t))
            .flatten();
        Ok(CgroupStats {
            cpu_usage_ns: num(self.file::<CpuAcctController>("cpuacct.usage")).unwrap_or(0),
            memory_usage_bytes: num(self.file::<MemController>("memory.usage_in_bytes"))
                .unwrap_or(0),
            memory_limit_bytes: limit,
            memory_peak_bytes: num(self.file::<MemController>("memory.max_usage_in_bytes")),
            pids_current: num(self.file::<PidController>("pids.current"))
                .unwrap_or(self.procs().len() as u64),
            pids_limit,
            io_read_bytes,
            io_write_bytes,
            oom_kills: oom.get("oom_kill").copied().unwrap_or(0),
        })
    }

    pub fn kill_all(&self) -> Result<()> {
        let freezer = self.cg.controller_of::<FreezerController>();
        let start = Instant::now();
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                return Ok(());
            }
            if start.elapsed() > KILL_DEADLINE {
                return Err(CgroupError::NotEmpty {
                    path: self.cg.path().to_string(),
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            // Frozen, nothing can fork between reading the list and the kills; the kills land on thaw.
            if let Some(f) = freezer {
                let _ = f.freeze();
            }
            for pid in procs {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if let Some(f) = freezer {
                let _ = f.thaw();
            }
            let _ = wait_until(Duration::from_millis(200), || self.procs().is_empty());
        }
    }

    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let f = self.controller::<FreezerController>("freeze")?;
        let r = if frozen { f.freeze() } else { f.thaw() };
        r.map_err(|e| backend(if frozen { "freeze" } else { "thaw" }, e))
    }

    /// Removes the (empty) group from every hierarchy: one rmdir each on the way that always works for a
    /// container that has ended; on any other outcome cgroups-rs's delete, which checks each directory
    /// and retries a busy one (a dying task can keep a group busy for a few milliseconds).
    pub fn remove(self) -> Result<()> {
        let fast = self.cg.subsystems().iter().all(|s| {
            match std::fs::remove_dir(s.to_controller().path()) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            }
        });
        if fast {
            return Ok(());
        }
        self.cg.delete().map_err(|e| backend("remove", e))
    }
}
