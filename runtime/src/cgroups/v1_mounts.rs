//! Where the v1 hierarchies are mounted, found without reading /proc/self/mountinfo.
//!
//! cgroups-rs's `V1::new()` parses the whole of /proc/self/mountinfo, which the kernel generates anew on
//! every read: ~60 µs with the 24 mounts of a fresh host, ~1 ms with 1,000 (a Kubernetes node or a Docker
//! host with many containers), all of it on every container start. Hosts lay the hierarchies out the same
//! way (systemd, cgroupfs-mount and Docker's init all do): `/sys/fs/cgroup/<controller>`, co-mounted ones
//! reached through their symlinks. [`discover`] takes the controllers the kernel has put on a v1 hierarchy
//! from /proc/cgroups (a line per controller, whatever the number of mounts), checks with one statfs each
//! that a v1 cgroup file system is mounted at the standard place, and falls back to cgroups-rs's mountinfo
//! parse when anything is elsewhere.

use std::path::{Path, PathBuf};

use cgroups_rs::fs::blkio::BlkIoController;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::devices::DevicesController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies::V1;
use cgroups_rs::fs::hugetlb::HugeTlbController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::net_cls::NetClsController;
use cgroups_rs::fs::net_prio::NetPrioController;
use cgroups_rs::fs::perf_event::PerfEventController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::rdma::RdmaController;
use cgroups_rs::fs::systemd::SystemdController;
use cgroups_rs::fs::{Cgroup, Controllers, Hierarchy, Subsystem};

/// cgroups-rs's order of the v1 subsystems (blkio before memory: a task joins blkio first for cgroup
/// writeback), which `Cgroup::add_task` and `create` follow.
const ORDER: [Controllers; 14] = [
    Controllers::BlkIo,
    Controllers::Mem,
    Controllers::Pids,
    Controllers::CpuSet,
    Controllers::CpuAcct,
    Controllers::Cpu,
    Controllers::Devices,
    Controllers::Freezer,
    Controllers::NetCls,
    Controllers::PerfEvent,
    Controllers::NetPrio,
    Controllers::HugeTlb,
    Controllers::Rdma,
    Controllers::Systemd,
];

/// The mount point of the hierarchy holding `controller` (as cgroups-rs names it), if one does.
pub fn mount_point(h: &dyn Hierarchy, controller: &str) -> Option<PathBuf> {
    h.subsystems()
        .iter()
        .find(|s| s.controller_name() == controller)
        .map(|s| s.to_controller().path().to_path_buf())
}

/// v1 hierarchies at `<root>/<controller>` (the named systemd hierarchy at `<root>/systemd`).
#[derive(Debug, Clone)]
pub struct StandardV1 {
    root: PathBuf,
    mounted: Vec<Controllers>,
}

/// The v1 hierarchies of this host: at the standard places when they are all there, else as cgroups-rs
/// finds them in /proc/self/mountinfo.
pub fn discover() -> Box<dyn Hierarchy> {
    match StandardV1::at(Path::new(super::CGROUP_ROOT), Path::new("/proc/cgroups")) {
        Some(h) => Box::new(h),
        None => Box::new(V1::new()),
    }
}

fn dir_name(c: &Controllers) -> String {
    match c {
        Controllers::Systemd => "systemd".to_string(),
        other => other.to_string(),
    }
}

fn is_cgroup1(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP_SUPER_MAGIC)
}

impl StandardV1 {
    /// The hierarchies under `root` for the controllers `proc_cgroups` (the format of /proc/cgroups) puts
    /// on a v1 hierarchy; None when one of them is not a v1 cgroup mount at `<root>/<name>`.
    pub fn at(root: &Path, proc_cgroups: &Path) -> Option<StandardV1> {
        let table = std::fs::read_to_string(proc_cgroups).ok()?;
        // "subsys_name hierarchy num_cgroups enabled"; hierarchy 0 is the unified (v2) one or none.
        let on_v1: Vec<&str> = table
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4 && f[1] != "0" && f[3] == "1").then_some(f[0])
            })
            .collect();
        let mut mounted = Vec::new();
        for c in ORDER {
            let name = dir_name(&c);
            if c == Controllers::Systemd {
                // A named hierarchy has no line in /proc/cgroups: take it where it usually is.
                if is_cgroup1(&root.join(&name)) {
                    mounted.push(c);
                }
                continue;
            }
            if !on_v1.contains(&name.as_str()) {
                continue;
            }
            if !is_cgroup1(&root.join(&name)) {
                return None;
            }
            mounted.push(c);
        }
        // A controller this crate does not know (misc, …) is left alone, as cgroups-rs leaves it.
        Some(StandardV1 {
            root: root.to_path_buf(),
            mounted,
        })
    }

    fn subsystem(&self, c: &Controllers) -> Subsystem {
        let point = self.root.join(dir_name(c));
        let base = PathBuf::from("/");
        match c {
            Controllers::BlkIo => Subsystem::BlkIo(BlkIoController::new(point, base, false)),
            Controllers::Mem => Subsystem::Mem(MemController::new(point, base, false)),
            Controllers::Pids => Subsystem::Pid(PidController::new(point, base, false)),
            Controllers::CpuSet => Subsystem::CpuSet(CpuSetController::new(point, base, false)),
            Controllers::CpuAcct => Subsystem::CpuAcct(CpuAcctController::new(point, base)),
            Controllers::Cpu => Subsystem::Cpu(CpuController::new(point, base, false)),
            Controllers::Devices => Subsystem::Devices(DevicesController::new(point, base)),
            Controllers::Freezer => Subsystem::Freezer(FreezerController::new(point, base, false)),
            Controllers::NetCls => Subsystem::NetCls(NetClsController::new(point, base)),
            Controllers::PerfEvent => Subsystem::PerfEvent(PerfEventController::new(point, base)),
            Controllers::NetPrio => Subsystem::NetPrio(NetPrioController::new(point, base)),
            Controllers::HugeTlb => Subsystem::HugeTlb(HugeTlbController::new(point, base, false)),
            Controllers::Rdma => Subsystem::Rdma(RdmaController::new(point, base)),
            Controllers::Systemd => Subsystem::Systemd(SystemdController::new(point, base, false)),
        }
    }
}

impl Hierarchy for StandardV1 {
    fn subsystems(&self) -> Vec<Subsystem> {
        self.mounted.iter().map(|c| self.subsystem(c)).collect()
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Cgroup::load(Box::new(self.clone()), parent)
    }

    fn v2(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(h: &dyn Hierarchy) -> Vec<(String, PathBuf)> {
        h.subsystems()
            .iter()
            .map(|s| {
                let p = s.to_controller().path().to_path_buf();
                (s.controller_name(), std::fs::canonicalize(&p).unwrap_or(p))
            })
            .collect()
    }

    #[test]
    fn finds_what_mountinfo_finds_on_this_host() {
        if crate::cgroups::detect() == crate::cgroups::CgroupMode::V2 {
            // Pure v2 host: no v1 hierarchy in either view.
            assert!(V1::new().subsystems().is_empty());
            return;
        }
        let fast = StandardV1::at(
            Path::new(crate::cgroups::CGROUP_ROOT),
            Path::new("/proc/cgroups"),
        )
        .expect("this host mounts its v1 hierarchies at /sys/fs/cgroup/<controller>");
        let slow = V1::new();
        assert!(!fast.subsystems().is_empty());
        assert_eq!(points(&fast), points(&slow));
        assert_eq!(
            mount_point(&fast, "memory"),
            slow.get_mount_point(Controllers::Mem).map(|(p, _)| p)
        );
    }

    #[test]
    fn a_controller_mounted_elsewhere_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("cgroups");
        std::fs::write(
            &table,
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\t1\t1\nhugetlb\t0\t1\t1\n",
        )
        .unwrap();
        // No cgroup file system at <dir>/memory.
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        assert!(StandardV1::at(dir.path(), &table).is_none());
        // Nothing on v1 at all (hierarchy 0 only): an empty but valid hierarchy list.
        std::fs::write(
            &table,
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\nhugetlb\t0\t1\t1\n",
        )
        .unwrap();
        let none = StandardV1::at(dir.path(), &table).unwrap();
        assert!(none.subsystems().is_empty());
        assert!(StandardV1::at(dir.path(), Path::new("/nonexistent/cgroups")).is_none());
    }
}
