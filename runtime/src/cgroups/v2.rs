//! The cgroup v2 backend: plain file writes below a root path of our choosing. Only directories
//! inside `<root>/<parent>` are ever created or written; the root itself is only read.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::format::{self, LimitWrite};
use super::{CgroupError, CgroupStats, Resources, Result, read_opt, wait_until};

/// Controllers strata enables for its containers when the parent offers them (for limits and stats).
pub const WANTED_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids"];

/// How long kill_all waits for the cgroup to empty.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct V2Cgroup {
    dir: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to an existing cgroup file in one write(2) (never creates files: a missing file
/// means the controller is not enabled, which the caller reports).
pub fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// The space-separated controller names of a `cgroup.controllers` / `cgroup.subtree_control` file.
pub fn read_controllers(path: &Path) -> BTreeSet<String> {
    read_opt(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Creates the directories of `rel`'s parent below `root` (each one ours) and enables the wanted
/// controllers in each of their `cgroup.subtree_control`, so the leaf gets them. The root is only
/// read: what it delegates (its `cgroup.subtree_control`) is what we can have. Returns the
/// controllers the leaf will have.
pub fn prepare_parents(root: &Path, rel: &str) -> Result<BTreeSet<String>> {
    let comps: Vec<&str> = rel.split('/').collect();
    let mut dir = root.to_path_buf();
    // What the first level below the root gets is decided by the root's subtree_control.
    let mut offered = read_controllers(&root.join("cgroup.subtree_control"));
    for comp in &comps[..comps.len() - 1] {
        dir.push(comp);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
        let enabled = read_controllers(&dir.join("cgroup.subtree_control"));
        let control = dir.join("cgroup.subtree_control");
        let mut now = BTreeSet::new();
        for c in WANTED_CONTROLLERS {
            if !offered.contains(*c) {
                continue;
            }
            // One controller per write: the kernel rejects the whole write if one fails.
            if enabled.contains(*c) || write_file(&control, &format!("+{c}")).is_ok() {
                now.insert(c.to_string());
            }
        }
        offered = now;
    }
    Ok(offered)
}

/// Writes the limits into the leaf `dir`; the first failure is returned naming its limit.
pub fn apply_writes(
    dir: &Path,
    writes: &[LimitWrite],
    controllers: &BTreeSet<String>,
) -> Result<()> {
    for w in writes {
        if !controllers.contains(w.controller) {
            return Err(CgroupError::ControllerUnavailable {
                controller: w.controller,
                limit: w.limit,
            });
        }
        let path = dir.join(w.file);
        write_file(&path, &w.value).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                // The controller is on but the file is not (e.g. no swap accounting).
                CgroupError::ControllerUnavailable {
                    controller: w.file,
                    limit: w.limit,
                }
            } else {
                CgroupError::LimitRejected {
                    limit: w.limit,
                    file: w.file.to_string(),
                    value: w.value.clone(),
                    source,
                }
            }
        })?;
    }
    Ok(())
}

/// Without the io.cost controller there is no `io.weight`; BFQ's `io.bfq.weight` (1..=1000, the
/// v1 scale, so the weight as given) takes its place, as runc does.
pub fn prefer_bfq_weight(
    dir: &Path,
    mut writes: Vec<LimitWrite>,
    weight: Option<u16>,
) -> Vec<LimitWrite> {
    if let Some(w) = weight
        && !dir.join("io.weight").exists()
        && dir.join("io.bfq.weight").exists()
    {
        for lw in writes.iter_mut().filter(|lw| lw.file == "io.weight") {
            lw.file = "io.bfq.weight";
            lw.value = w.to_string();
        }
    }
    writes
}

/// v2 has no devices controller: the rules become an eBPF program attached to the cgroup (see
/// [`super::devices`]). No rules, no program.
fn attach_device_rules(cg: &V2Cgroup, rules: &[super::devices::DeviceRule]) -> Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let fd = cg.dir_fd()?;
    super::devices::attach(std::os::fd::AsFd::as_fd(&fd), rules).map_err(|source| {
        CgroupError::LimitRejected {
            limit: "device-rule",
            file: "BPF_CGROUP_DEVICE".into(),
            value: format!("{} rules", rules.len()),
            source,
        }
    })
}

impl V2Cgroup {
    /// Creates `<root>/<rel>` with the limits of `res`; on failure nothing of the leaf remains.
    pub fn create(root: &Path, rel: &str, res: &Resources) -> Result<V2Cgroup> {
        // Validate everything before touching the file system.
        let writes = format::v2_writes(res)?;
        let controllers = prepare_parents(root, rel)?;
        let dir = root.join(rel);
        std::fs::create_dir(&dir).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                CgroupError::AlreadyExists {
                    path: dir.display().to_string(),
                }
            } else {
                io_err("create", &dir)(e)
            }
        })?;
        let cg = V2Cgroup { dir };
        let writes = prefer_bfq_weight(&cg.dir, writes, res.io_weight);
        let applied = apply_writes(&cg.dir, &writes, &controllers)
            .and_then(|()| attach_device_rules(&cg, &res.devices));
        if let Err(e) = applied {
            let _ = std::fs::remove_dir(&cg.dir);
            return Err(e);
        }
        Ok(cg)
    }

    pub fn update(&self, res: &Resources) -> Result<()> {
        let writes = format::v2_writes(res)?;
        let parent = self.dir.parent().unwrap_or(&self.dir);
        let controllers = read_controllers(&parent.join("cgroup.subtree_control"));
        let writes = prefer_bfq_weight(&self.dir, writes, res.io_weight);
        apply_writes(&self.dir, &writes, &controllers)
    }

    pub fn open(root: &Path, rel: &str) -> Result<V2Cgroup> {
        let dir = root.join(rel);
        if !dir.join("cgroup.procs").exists() {
            return Err(CgroupError::NotFound {
                path: dir.display().to_string(),
            });
        }
        Ok(V2Cgroup { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn dir_fd(&self) -> Result<OwnedFd> {
        nix::fcntl::open(
            &self.dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| io_err("open", &self.dir)(e.into()))
    }

    pub fn add_task(&self, pid: i32) -> Result<()> {
        let path = self.dir.join("cgroup.procs");
        write_file(&path, &pid.to_string()).map_err(io_err("add a process to", &self.dir))
    }

    pub fn procs(&self) -> Vec<i32> {
        let mut v: Vec<i32> = read_opt(&self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    /// cgroup.events "populated": 0 once no task is left in the subtree.
    fn populated(&self) -> bool {
        match read_opt(&self.dir.join("cgroup.events")) {
            Some(t) => format::parse_flat_keyed(&t)
                .get("populated")
                .is_none_or(|p| *p != 0),
            None => !self.procs().is_empty(),
        }
    }

    pub fn stats(&self) -> Result<CgroupStats> {
        if !self.dir.exists() {
            return Err(CgroupError::NotFound {
                path: self.dir.display().to_string(),
            });
        }
        let read = |f: &str| read_opt(&self.dir.join(f));
        let num = |f: &str| read(f).and_then(|t| t.trim().parse::<u64>().ok());
        let max = |f: &str| read(f).and_then(|t| format::parse_max(&t));
        let cpu = read("cpu.stat")
            .map(|t| format::parse_flat_keyed(&t))
            .unwrap_or_default();
        let events = read("memory.events")
            .map(|t| format::parse_flat_keyed(&t))
            .unwrap_or_default();
        let (io_read_bytes, io_write_bytes) = read("io.stat")
            .map(|t| format::io_stat_bytes_v2(&t))
            .unwrap_or((0, 0));
        Ok(CgroupStats {
            cpu_usage_ns: cpu.get("usage_usec").copied().unwrap_or(0) * 1000,
            memory_usage_bytes: num("memory.current").unwrap_or(0),
            memory_limit_bytes: max("memory.max").flatten(),
            memory_peak_bytes: num("memory.peak"),
            pids_current: num("pids.current").unwrap_or(self.procs().len() as u64),
            pids_limit: max("pids.max").flatten(),
            io_read_bytes,
            io_write_bytes,
            oom_kills: events.get("oom_kill").copied().unwrap_or(0),
        })
    }

    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let file = self.dir.join("cgroup.freeze");
        write_file(&file, if frozen { "1" } else { "0" }).map_err(io_err("freeze", &file))
    }

    pub fn kill_all(&self) -> Result<()> {
        let kill_file = self.dir.join("cgroup.kill");
        if kill_file.exists() {
            write_file(&kill_file, "1").map_err(io_err("kill the processes of", &self.dir))?;
        } else {
            // Kernels before 5.14: freeze so nothing forks while we kill, then thaw so they die.
            let freeze = self.dir.join("cgroup.freeze");
            let _ = write_file(&freeze, "1");
            for pid in self.procs() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = write_file(&freeze, "0");
        }
        wait_until(KILL_WAIT, || !self.populated()).map_err(|waited_ms| CgroupError::NotEmpty {
            path: self.dir.display().to_string(),
            waited_ms,
        })
    }

    pub fn remove(self) -> Result<()> {
        remove_dir_retrying(&self.dir)
    }
}

/// rmdir, retrying EBUSY for up to ~1 s (a task that just exited may still be leaving the cgroup).
pub fn remove_dir_retrying(dir: &Path) -> Result<()> {
    let mut pause = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(1) => {
                std::thread::sleep(pause);
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(io_err("remove", dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The v2 file logic against a tempdir laid out like a cgroup2 hierarchy (the kernel's files
    //! pre-created, as the kernel would show them).
    use super::*;

    fn touch(p: &Path, content: &str) {
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn parents_get_what_the_root_delegates() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        touch(&root.join("cgroup.subtree_control"), "cpu memory pids\n");
        // The parent already exists with its kernel files (as after a previous container).
        std::fs::create_dir(root.join("strata")).unwrap();
        touch(&root.join("strata/cgroup.subtree_control"), "");
        let got = prepare_parents(root, "strata/c1").unwrap();
        assert_eq!(
            got,
            ["cpu", "memory", "pids"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        // Controllers were enabled in the parent (the kernel takes one "+name" per write).
        assert!(
            std::fs::read_to_string(root.join("strata/cgroup.subtree_control"))
                .unwrap()
                .starts_with('+')
        );
        // The root was only read.
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "cpu memory pids\n"
        );
    }

    #[test]
    fn missing_parent_controller_file_means_nothing_delegated() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        touch(&root.join("cgroup.subtree_control"), "memory\n");
        // A fresh parent dir in a plain tempdir has no kernel files, so enabling fails: nothing offered.
        let got = prepare_parents(root, "p/c").unwrap();
        assert!(got.is_empty());
        assert!(root.join("p").is_dir());
    }

    #[test]
    fn limits_written_to_the_leaf_files() {
        let t = tempfile::tempdir().unwrap();
        let leaf = t.path();
        for f in [
            "memory.max",
            "memory.swap.max",
            "cpu.max",
            "pids.max",
            "io.max",
            "cpuset.cpus",
        ] {
            touch(&leaf.join(f), "");
        }
        let res = Resources {
            memory: Some(32 << 20),
            memory_swap: Some(32 << 20),
            cpus: Some(0.25),
            pids: Some(10),
            cpuset: Some("0".into()),
            device_write_bps: vec![("7:0".into(), 1 << 20)],
            ..Default::default()
        };
        let writes = format::v2_writes(&res).unwrap();
        let all: BTreeSet<String> = WANTED_CONTROLLERS.iter().map(|s| s.to_string()).collect();
        apply_writes(leaf, &writes, &all).unwrap();
        let read = |f: &str| std::fs::read_to_string(leaf.join(f)).unwrap();
        assert_eq!(read("memory.max"), (32u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "25000 100000");
        assert_eq!(read("pids.max"), "10");
        assert_eq!(read("cpuset.cpus"), "0");
        assert_eq!(read("io.max"), "7:0 wbps=1048576");

        // Without the controller: an error naming the limit and the controller.
        let only_cpu: BTreeSet<String> = ["cpu".to_string()].into();
        let e = apply_writes(leaf, &writes, &only_cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--memory") && e.contains("\"memory\""), "{e}");
        // A file the kernel does not offer (e.g. no swap accounting): also named.
        std::fs::remove_file(leaf.join("memory.swap.max")).unwrap();
        let e = apply_writes(leaf, &writes, &all).unwrap_err().to_string();
        assert!(e.contains("--memory-swap"), "{e}");
    }

    #[test]
    fn io_weight_falls_back_to_bfq() {
        let t = tempfile::tempdir().unwrap();
        let leaf = t.path();
        let res = Resources {
            io_weight: Some(500),
            ..Default::default()
        };
        let writes = format::v2_writes(&res).unwrap();
        // With io.weight present, it is used (converted to the 1..10000 scale).
        touch(&leaf.join("io.weight"), "");
        touch(&leaf.join("io.bfq.weight"), "");
        let w = prefer_bfq_weight(leaf, writes.clone(), res.io_weight);
        assert_eq!(
            (w[0].file, w[0].value.as_str()),
            ("io.weight", "default 4950")
        );
        // Only BFQ: its file, on the v1 scale.
        std::fs::remove_file(leaf.join("io.weight")).unwrap();
        let w = prefer_bfq_weight(leaf, writes, res.io_weight);
        assert_eq!((w[0].file, w[0].value.as_str()), ("io.bfq.weight", "500"));
        let io: BTreeSet<String> = ["io".to_string()].into();
        apply_writes(leaf, &w, &io).unwrap();
        assert_eq!(
            std::fs::read_to_string(leaf.join("io.bfq.weight")).unwrap(),
            "500"
        );
    }

    #[test]
    fn stats_read_from_v2_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        touch(&d.join("cgroup.procs"), "12\n7\n");
        touch(
            &d.join("cpu.stat"),
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        touch(&d.join("memory.current"), "1048576\n");
        touch(&d.join("memory.max"), "max\n");
        touch(&d.join("memory.peak"), "2097152\n");
        touch(
            &d.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        touch(&d.join("pids.current"), "2\n");
        touch(&d.join("pids.max"), "16\n");
        touch(
            &d.join("io.stat"),
            "254:0 rbytes=10 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n",
        );
        let cg = V2Cgroup {
            dir: d.to_path_buf(),
        };
        assert_eq!(cg.procs(), vec![7, 12]);
        let s = cg.stats().unwrap();
        assert_eq!(
            s,
            CgroupStats {
                cpu_usage_ns: 2_500_000,
                memory_usage_bytes: 1 << 20,
                memory_limit_bytes: None,
                memory_peak_bytes: Some(2 << 20),
                pids_current: 2,
                pids_limit: Some(16),
                io_read_bytes: 10,
                io_write_bytes: 20,
                oom_kills: 1,
            }
        );
    }
}
