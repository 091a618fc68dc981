//! cgroup cases: create; set memory, cpu, pids and io limits; set Docker's default device rules; attach a
//! process; read stats; remove — through cgroups-rs and through direct file writes (for devices on v2:
//! strata's eBPF device program), on v1 and v2 where present, against 0, 100 and 1000 existing sibling
//! cgroups. Everything lives under a parent `strata-bench-<pid>-<n>-cg` per case.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::blkio::BlkIoController;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, MaxValue, hierarchies};
use nix::sched::CloneFlags;

use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite, unique_name};
use crate::meta;
use crate::sys::{HolderSetup, NsHolder};

const V1_ROOT: &str = "/sys/fs/cgroup";
/// The v1 controllers every case uses (cpu and cpuacct are co-mounted on many hosts, separate on others).
const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "blkio"];
/// Removing a cgroup offlines it asynchronously (memory especially); pause after each sample that removes one.
const CG_QUIESCE: Duration = Duration::from_millis(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    SetMemory,
    SetCpu,
    SetPids,
    SetIo,
    SetDevices,
    Attach,
    ReadStats,
    Remove,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::Create,
        Op::SetMemory,
        Op::SetCpu,
        Op::SetPids,
        Op::SetIo,
        Op::SetDevices,
        Op::Attach,
        Op::ReadStats,
        Op::Remove,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::SetMemory => "set-memory",
            Op::SetCpu => "set-cpu",
            Op::SetPids => "set-pids",
            Op::SetIo => "set-io",
            Op::SetDevices => "set-devices",
            Op::Attach => "attach",
            Op::ReadStats => "read-stats",
            Op::Remove => "remove",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    CgroupsRsV1,
    DirectV1,
    CgroupsRsV2,
    DirectV2,
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::CgroupsRsV1,
        Backend::DirectV1,
        Backend::CgroupsRsV2,
        Backend::DirectV2,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Backend::CgroupsRsV1 => "cgroups-rs-v1",
            Backend::DirectV1 => "direct-v1",
            Backend::CgroupsRsV2 => "cgroups-rs-v2",
            Backend::DirectV2 => "direct-v2",
        }
    }
    fn v2(self) -> bool {
        matches!(self, Backend::CgroupsRsV2 | Backend::DirectV2)
    }
}

/// The controller an operation needs on v2, if any.
fn v2_controller(op: Op) -> Option<&'static str> {
    match op {
        Op::SetMemory => Some("memory"),
        Op::SetCpu => Some("cpu"),
        Op::SetPids => Some("pids"),
        Op::SetIo => Some("io"),
        _ => None,
    }
}

/// Why `backend` cannot run `op` here, if it cannot.
fn unavailable(backend: Backend, op: Op) -> Option<String> {
    let mode = meta::cgroup_mode();
    if op == Op::SetDevices && backend == Backend::CgroupsRsV2 {
        return Some(
            "cgroups-rs 0.5 has no cgroup v2 device control (that takes an eBPF program)".into(),
        );
    }
    if backend.v2() {
        if mode == "v1" {
            return Some("no cgroup2 hierarchy on this host".into());
        }
        if backend == Backend::CgroupsRsV2 && mode != "v2" {
            return Some(format!(
                "cgroups-rs drives cgroup2 only when it is mounted at /sys/fs/cgroup; this host is {mode}"
            ));
        }
        if let Some(c) = v2_controller(op)
            && !meta::cgroup_v2_controllers().iter().any(|x| x == c)
        {
            return Some(format!(
                "controller {c} is not available in the cgroup2 hierarchy ({mode} host; cgroup2 has: {})",
                meta::cgroup_v2_controllers().join(" ")
            ));
        }
        return None;
    }
    if mode == "v2" {
        return Some("no cgroup v1 hierarchies on this host (pure v2)".into());
    }
    let have = meta::cgroup_v1_controllers();
    let devices = (op == Op::SetDevices).then_some("devices");
    V1_CONTROLLERS
        .iter()
        .copied()
        .chain(devices)
        .find(|c| !have.iter().any(|h| h == c))
        .map(|c| format!("cgroup v1 controller {c} is not mounted"))
}

/// A block device "major:minor" for io limits (the first non-loop, non-ram, non-zram disk).
fn block_device() -> Option<(u64, u64)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let name = names
        .into_iter()
        .find(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))?;
    let dev = std::fs::read_to_string(format!("/sys/block/{name}/dev")).ok()?;
    let (a, b) = dev.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn write(path: &Path, value: &str) -> CaseResult<()> {
    std::fs::write(path, value)
        .map_err(|e| CaseError::failed(format!("write {value:?} to {}: {e}", path.display())))
}

fn rs_err(e: cgroups_rs::fs::error::Error) -> CaseError {
    CaseError::failed(format!("cgroups-rs: {e}"))
}

/// The distinct v1 hierarchy roots of [`V1_CONTROLLERS`] (co-mounted controllers share one).
fn v1_roots() -> &'static [PathBuf] {
    static ROOTS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots: Vec<PathBuf> = Vec::new();
        for c in V1_CONTROLLERS {
            let p = Path::new(V1_ROOT).join(c);
            let canon = std::fs::canonicalize(&p).unwrap_or(p);
            if !roots.contains(&canon) {
                roots.push(canon);
            }
        }
        roots
    })
}

/// Directories of cgroup `rel` for a direct backend (one per v1 controller, or the one v2 dir).
fn dirs(backend: Backend, rel: &str) -> Vec<PathBuf> {
    if backend.v2() {
        vec![meta::cgroup2_root().unwrap_or(Path::new(V1_ROOT)).join(rel)]
    } else {
        v1_roots().iter().map(|r| r.join(rel)).collect()
    }
}

/// Where set-devices makes its cgroups: the v1 devices hierarchy (not among [`V1_CONTROLLERS`], so the
/// other cases keep measuring the same hierarchies as before), or the v2 directory.
fn devices_dir(backend: Backend, rel: &str) -> PathBuf {
    if backend.v2() {
        dirs(backend, rel).remove(0)
    } else {
        Path::new(V1_ROOT).join("devices").join(rel)
    }
}

/// Docker's default device rules on `rel`, as strata sets them on each container: written to the v1
/// devices controller (through cgroups-rs, or directly), or compiled into an eBPF device program and
/// attached (v2).
fn set_devices(backend: Backend, rel: &str, pin_dir: Option<&Path>) -> CaseResult<()> {
    use cgroups_rs::fs::devices::{DevicePermissions as P, DeviceType, DevicesController};
    use strata_runtime::cgroups::devices::{self, DeviceKind};
    let rules = devices::docker_default();
    match backend {
        Backend::DirectV1 => {
            let dir = devices_dir(backend, rel);
            devices::write_v1(&dir, &rules)
                .map_err(|e| CaseError::failed(format!("{}: {e}", dir.display())))
        }
        Backend::CgroupsRsV1 => {
            let cg = Cgroup::load_with_specified_controllers(
                Box::new(hierarchies::V1::new()),
                rel,
                vec!["devices".to_string()],
            );
            let dev: &DevicesController = cg.controller_of().ok_or_else(|| {
                CaseError::failed("no devices controller in the cgroups-rs handle")
            })?;
            for r in &rules {
                let kind = match r.kind {
                    DeviceKind::All => DeviceType::All,
                    DeviceKind::Char => DeviceType::Char,
                    DeviceKind::Block => DeviceType::Block,
                };
                let perms: Vec<P> = [
                    (devices::READ, P::Read),
                    (devices::WRITE, P::Write),
                    (devices::MKNOD, P::MkNod),
                ]
                .into_iter()
                .filter(|(bit, _)| r.access & bit != 0)
                .map(|(_, p)| p)
                .collect();
                let num = |n: Option<u32>| n.map_or(-1, i64::from);
                if r.allow {
                    dev.allow_device(kind, num(r.major), num(r.minor), &perms)
                } else {
                    dev.deny_device(kind, num(r.major), num(r.minor), &perms)
                }
                .map_err(rs_err)?;
            }
            Ok(())
        }
        Backend::DirectV2 => {
            let dir = devices_dir(backend, rel);
            let fd = std::fs::File::open(&dir)
                .map_err(|e| CaseError::failed(format!("open {}: {e}", dir.display())))?;
            let fd = std::os::fd::AsFd::as_fd(&fd);
            match pin_dir {
                Some(pins) => devices::attach_pinned(fd, &rules, pins),
                None => devices::attach(fd, &rules),
            }
            .map_err(|e| CaseError::failed(format!("device program on {}: {e}", dir.display())))
        }
        Backend::CgroupsRsV2 => Err(CaseError::Skipped("no cgroups-rs v2 device control".into())),
    }
}

fn rs_cgroup(backend: Backend, rel: &str, create: bool) -> CaseResult<Cgroup> {
    let hier = if backend.v2() {
        hierarchies::auto()
    } else {
        Box::new(hierarchies::V1::new())
    };
    let controllers = if backend.v2() {
        None
    } else {
        Some(V1_CONTROLLERS.iter().map(|s| s.to_string()).collect())
    };
    if create {
        Cgroup::new_with_specified_controllers(hier, rel, controllers).map_err(rs_err)
    } else {
        Ok(match controllers {
            Some(c) => Cgroup::load_with_specified_controllers(hier, rel, c),
            None => Cgroup::load(hier, rel),
        })
    }
}

fn create(backend: Backend, rel: &str) -> CaseResult<()> {
    match backend {
        Backend::CgroupsRsV1 | Backend::CgroupsRsV2 => rs_cgroup(backend, rel, true).map(drop),
        Backend::DirectV1 | Backend::DirectV2 => {
            for d in dirs(backend, rel) {
                std::fs::create_dir(&d)
                    .map_err(|e| CaseError::failed(format!("mkdir {}: {e}", d.display())))?;
            }
            Ok(())
        }
    }
}

fn remove(backend: Backend, rel: &str) -> CaseResult<()> {
    match backend {
        Backend::CgroupsRsV1 | Backend::CgroupsRsV2 => {
            rs_cgroup(backend, rel, false)?.delete().map_err(rs_err)
        }
        Backend::DirectV1 | Backend::DirectV2 => {
            for d in dirs(backend, rel) {
                std::fs::remove_dir(&d)
                    .map_err(|e| CaseError::failed(format!("rmdir {}: {e}", d.display())))?;
            }
            Ok(())
        }
    }
}

/// Best-effort removal used by teardown (children first).
fn remove_tree(backend: Backend, rel: &str) {
    for d in dirs(backend, rel) {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&d);
    }
}

struct CgCase {
    backend: Backend,
    op: Op,
    siblings: usize,
    parent: String,
    round: u64,
    holder: Option<NsHolder>,
    device: Option<(u64, u64)>,
    /// set-devices on v2 with the pins in a bpffs of the case's own (mounted on this temp dir), so the
    /// samples after the first attach the pinned program even where the host has no bpffs.
    pinned: bool,
    bpffs: Option<tempfile::TempDir>,
}

impl CgCase {
    fn target(&self) -> String {
        format!("{}/t", self.parent)
    }
    fn set(&self, i: u64) -> CaseResult<()> {
        let t = self.target();
        let mem = (256 + (i % 2) * 64) << 20;
        let quota = 50_000 + (i % 2) * 10_000;
        let pids = 512 + i % 2;
        let bps = (10 + i % 2) << 20;
        let (maj, min) = self.device.unwrap_or((0, 0));
        match self.backend {
            Backend::CgroupsRsV1 | Backend::CgroupsRsV2 => {
                let cg = rs_cgroup(self.backend, &t, false)?;
                let missing = || CaseError::failed("controller missing in cgroups-rs handle");
                match self.op {
                    Op::SetMemory => cg
                        .controller_of::<MemController>()
                        .ok_or_else(missing)?
                        .set_limit(mem as i64),
                    Op::SetCpu => cg
                        .controller_of::<CpuController>()
                        .ok_or_else(missing)?
                        .set_cfs_quota_and_period(Some(quota as i64), Some(100_000)),
                    Op::SetPids => cg
                        .controller_of::<PidController>()
                        .ok_or_else(missing)?
                        .set_pid_max(MaxValue::Value(pids as i64)),
                    Op::SetIo => cg
                        .controller_of::<BlkIoController>()
                        .ok_or_else(missing)?
                        .throttle_read_bps_for_device(maj, min, bps),
                    _ => Ok(()),
                }
                .map_err(rs_err)
            }
            Backend::DirectV1 => {
                let d = |c: &str| Path::new(V1_ROOT).join(c).join(&t);
                match self.op {
                    Op::SetMemory => {
                        write(&d("memory").join("memory.limit_in_bytes"), &mem.to_string())
                    }
                    Op::SetCpu => {
                        write(&d("cpu").join("cpu.cfs_period_us"), "100000")?;
                        write(&d("cpu").join("cpu.cfs_quota_us"), &quota.to_string())
                    }
                    Op::SetPids => write(&d("pids").join("pids.max"), &pids.to_string()),
                    Op::SetIo => write(
                        &d("blkio").join("blkio.throttle.read_bps_device"),
                        &format!("{maj}:{min} {bps}"),
                    ),
                    _ => Ok(()),
                }
            }
            Backend::DirectV2 => {
                let d = dirs(self.backend, &t).remove(0);
                match self.op {
                    Op::SetMemory => write(&d.join("memory.max"), &mem.to_string()),
                    Op::SetCpu => write(&d.join("cpu.max"), &format!("{quota} 100000")),
                    Op::SetPids => write(&d.join("pids.max"), &pids.to_string()),
                    Op::SetIo => write(&d.join("io.max"), &format!("{maj}:{min} rbps={bps}")),
                    _ => Ok(()),
                }
            }
        }
    }

    fn attach(&self, rel: &str) -> CaseResult<()> {
        let pid = self
            .holder
            .as_ref()
            .ok_or_else(|| CaseError::failed("no process to attach"))?
            .pid();
        match self.backend {
            Backend::CgroupsRsV1 | Backend::CgroupsRsV2 => rs_cgroup(self.backend, rel, false)?
                .add_task_by_tgid(cgroups_rs::CgroupPid::from(pid.as_raw() as u64))
                .map_err(rs_err),
            Backend::DirectV1 | Backend::DirectV2 => {
                for d in dirs(self.backend, rel) {
                    write(&d.join("cgroup.procs"), &pid.to_string())?;
                }
                Ok(())
            }
        }
    }

    fn read_stats(&self) -> CaseResult<u64> {
        let t = self.target();
        match self.backend {
            Backend::CgroupsRsV1 | Backend::CgroupsRsV2 => {
                let cg = rs_cgroup(self.backend, &t, false)?;
                let mut total = 0;
                if let Some(m) = cg.controller_of::<MemController>() {
                    total += m.memory_stat().usage_in_bytes;
                }
                if let Some(p) = cg.controller_of::<PidController>() {
                    total += p.get_pid_current().map_err(rs_err)?;
                }
                if let Some(c) = cg.controller_of::<CpuAcctController>() {
                    total += c.cpuacct().usage;
                }
                Ok(total)
            }
            Backend::DirectV1 | Backend::DirectV2 => {
                let files: Vec<PathBuf> = if self.backend == Backend::DirectV1 {
                    let d = |c: &str, f: &str| Path::new(V1_ROOT).join(c).join(&t).join(f);
                    vec![
                        d("memory", "memory.stat"),
                        d("memory", "memory.usage_in_bytes"),
                        d("pids", "pids.current"),
                        d("cpuacct", "cpuacct.usage"),
                    ]
                } else {
                    let d = dirs(self.backend, &t).remove(0);
                    ["cgroup.stat", "memory.stat", "cpu.stat", "pids.current"]
                        .iter()
                        .map(|f| d.join(f))
                        .filter(|p| p.exists())
                        .collect()
                };
                let mut total = 0;
                for f in files {
                    total += std::fs::read_to_string(&f)
                        .map_err(|e| CaseError::failed(format!("read {}: {e}", f.display())))?
                        .len() as u64;
                }
                Ok(total)
            }
        }
    }
}

impl Case for CgCase {
    fn subject(&self) -> String {
        if self.pinned {
            format!("{}-pinned", self.backend.name())
        } else {
            self.backend.name().into()
        }
    }
    fn prepare(&mut self) -> CaseResult<()> {
        if let Some(reason) = unavailable(self.backend, self.op) {
            return Err(CaseError::Skipped(reason));
        }
        if self.op == Op::SetIo {
            self.device = Some(
                block_device()
                    .ok_or_else(|| CaseError::Skipped("no block device for io limits".into()))?,
            );
        }
        if self.pinned {
            let dir =
                tempfile::tempdir().map_err(|e| CaseError::failed(format!("tempdir: {e}")))?;
            nix::mount::mount(
                Some("bpf"),
                dir.path(),
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| CaseError::Skipped(format!("cannot mount a bpffs: {e}")))?;
            self.bpffs = Some(dir);
        }
        self.parent = unique_name("cg");
        // The parent and the siblings are made with direct writes: they are scenery, not measured.
        let direct = if self.backend.v2() {
            Backend::DirectV2
        } else {
            Backend::DirectV1
        };
        create(direct, &self.parent)?;
        if self.backend.v2()
            && let Some(d) = dirs(direct, &self.parent).first()
        {
            // Enable what the parent may hand down (v2 needs it for the child's controller files).
            let wanted: Vec<String> = meta::cgroup_v2_controllers()
                .iter()
                .map(|c| format!("+{c}"))
                .collect();
            let _ = std::fs::write(d.join("cgroup.subtree_control"), wanted.join(" "));
        }
        for i in 0..self.siblings {
            create(direct, &format!("{}/s{i}", self.parent))?;
        }
        if self.op == Op::SetDevices && !self.backend.v2() {
            let d = devices_dir(self.backend, &self.parent);
            std::fs::create_dir(&d)
                .map_err(|e| CaseError::failed(format!("mkdir {}: {e}", d.display())))?;
        }
        // set-devices makes a fresh cgroup per sample: device programs pile up on a v2 cgroup.
        if !matches!(self.op, Op::Create | Op::Remove | Op::SetDevices) {
            create(direct, &self.target())?;
        }
        if self.op == Op::Attach {
            create(direct, &format!("{}/t2", self.parent))?;
            self.holder = Some(
                NsHolder::spawn(CloneFlags::empty(), &HolderSetup::default())
                    .map_err(CaseError::failed)?,
            );
        }
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        self.round += 1;
        let t = self.target();
        let elapsed = match self.op {
            Op::Create => {
                let start = Instant::now();
                create(self.backend, &t)?;
                let e = start.elapsed();
                remove(self.backend, &t)?;
                e
            }
            Op::Remove => {
                create(self.backend, &t)?;
                let start = Instant::now();
                remove(self.backend, &t)?;
                start.elapsed()
            }
            Op::Attach => {
                let dest = if self.round % 2 == 0 {
                    t
                } else {
                    format!("{}/t2", self.parent)
                };
                let start = Instant::now();
                self.attach(&dest)?;
                start.elapsed()
            }
            Op::ReadStats => {
                let start = Instant::now();
                std::hint::black_box(self.read_stats()?);
                start.elapsed()
            }
            Op::SetDevices => {
                let d = devices_dir(self.backend, &t);
                std::fs::create_dir(&d)
                    .map_err(|e| CaseError::failed(format!("mkdir {}: {e}", d.display())))?;
                let start = Instant::now();
                let pins = self.bpffs.as_ref().map(|d| d.path().join("strata"));
                let set = set_devices(self.backend, &t, pins.as_deref());
                let e = start.elapsed();
                std::fs::remove_dir(&d)
                    .map_err(|e| CaseError::failed(format!("rmdir {}: {e}", d.display())))?;
                set?;
                e
            }
            _ => {
                let start = Instant::now();
                self.set(self.round)?;
                start.elapsed()
            }
        };
        Ok(elapsed.into())
    }
    fn teardown(&mut self) {
        if let Some(h) = self.holder.take() {
            let _ = h.release();
        }
        if let Some(dir) = self.bpffs.take() {
            let _ = nix::mount::umount2(dir.path(), nix::mount::MntFlags::MNT_DETACH);
        }
        if !self.parent.is_empty() {
            let direct = if self.backend.v2() {
                Backend::DirectV2
            } else {
                Backend::DirectV1
            };
            if self.op == Op::SetDevices && !self.backend.v2() {
                let d = devices_dir(self.backend, &self.parent);
                let _ = std::fs::remove_dir(d.join("t"));
                let _ = std::fs::remove_dir(d);
            }
            // Exited processes leave their cgroup asynchronously; retry briefly.
            for _ in 0..50 {
                remove_tree(direct, &self.parent);
                if dirs(direct, &self.parent).iter().all(|d| !d.exists()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            self.parent.clear();
        }
    }
    fn quiesce(&self) -> Duration {
        if matches!(self.op, Op::Create | Op::Remove | Op::SetDevices) {
            CG_QUIESCE
        } else {
            Duration::ZERO
        }
    }
}

pub fn groups(suite: Suite) -> Vec<Group> {
    let siblings: &[usize] = match suite {
        Suite::Quick => &[0, 1000],
        _ => &[0, 100, 1000],
    };
    let mut out = Vec::new();
    let pins = if nix::sys::statfs::statfs("/sys/fs/bpf")
        .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
    {
        "here a bpffs is mounted: the later samples attach the pinned program"
    } else {
        "here no bpffs is mounted: every sample loads"
    };
    for op in Op::ALL {
        for &n in siblings {
            let mut g = Group::new(
                Family::Cgroups,
                format!("{}/siblings={n}", op.name()),
                format!(
                    "cgroup {} with {n} existing sibling cgroups, timed around the operation alone. v1 uses the \
                     controllers memory, cpu, cpuacct, pids, blkio; cgroups-rs is called with the same set. set-* writes \
                     alternate between two values so no write is a no-op; attach moves one sleeping process \
                     between two cgroups; create and remove pause 2 ms after each sample. set-devices writes \
                     Docker's default device rules (deny all, then 12 allow rules: strata's default for each \
                     container) into a fresh cgroup per sample, made and removed untimed (v1: in the devices \
                     hierarchy, through cgroups-rs or strata's writer; v2: strata's eBPF device program, \
                     compiled and attached, loaded by the first sample and pinned in /sys/fs/bpf/strata when a \
                     bpffs is mounted there, loaded by every sample otherwise ({pins}); direct-v2-pinned \
                     keeps its pins in a bpffs of its own, so its samples after the first attach the pinned \
                     program; cgroups-rs has no v2 device control).",
                    op.name()
                ),
            )
            .reference("direct-v1");
            let pinned = (op == Op::SetDevices).then_some((Backend::DirectV2, true));
            for (b, pinned) in Backend::ALL.into_iter().map(|b| (b, false)).chain(pinned) {
                g = g.case(CgCase {
                    backend: b,
                    op,
                    siblings: n,
                    parent: String::new(),
                    round: 0,
                    holder: None,
                    device: None,
                    pinned,
                    bpffs: None,
                });
            }
            out.push(g);
        }
    }
    out
}
