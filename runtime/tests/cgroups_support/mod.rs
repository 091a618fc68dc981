//! Shared helpers of the cgroups tests: a private parent cgroup per test that is removed (and
//! checked gone) afterwards, and processes that wait on a pipe until they are in the cgroup.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use strata_runtime::cgroups::ContainerCgroup;

pub const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails (never skips) when the test cannot run for real.
pub fn require_root_and_busybox() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (they create cgroups)"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "these tests need busybox-static at {BUSYBOX}"
    );
}

/// Every mount point of a cgroup or cgroup2 file system.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let point = pre.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(point))
        })
        .collect()
}

/// The mount point of the cgroup2 hierarchy (unified on hybrid hosts, /sys/fs/cgroup on v2).
pub fn cgroup2_mount() -> PathBuf {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split_whitespace().nth(4)?;
            (post.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(point))
        })
        .expect("this test needs a cgroup2 mount (none in /proc/self/mountinfo)")
}

/// A parent cgroup `strata-test-res-<pid>-<n>` owned by one test; dropped, it kills and removes
/// every container cgroup below it and then itself, in every hierarchy.
pub struct TestParent {
    pub name: String,
}

impl TestParent {
    pub fn new() -> TestParent {
        require_root_and_busybox();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        TestParent {
            name: format!("strata-test-res-{}-{n}", std::process::id()),
        }
    }

    pub fn child_name(&self, n: u32) -> String {
        format!("c{n}")
    }

    /// Gives this (existing) parent the largest CPU weight, so its tasks win CPU time against the
    /// rest of the machine (group scheduling makes a task's nice value irrelevant here).
    pub fn boost_cpu_weight(&self) {
        let mut done = false;
        for m in cgroup_mounts() {
            let dir = m.join(&self.name);
            for (file, value) in [("cpu.shares", "262144"), ("cpu.weight", "10000")] {
                if dir.join(file).exists() {
                    std::fs::write(dir.join(file), value).unwrap();
                    done = true;
                }
            }
        }
        assert!(
            done,
            "no cpu controller file in the test parent {}",
            self.name
        );
    }

    /// Directories of this parent that still exist, in any cgroup hierarchy.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.name))
            .filter(|p| p.exists())
            .collect()
    }

    fn cleanup(&self) {
        // Any container cgroup a failed test left: kill and remove (v1 or v2 layout alike).
        for mount in cgroup_mounts() {
            let dir = mount.join(&self.name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    kill_procs_in(&e.path());
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }

    /// Removes the parent everywhere and asserts nothing of it remains.
    pub fn finish(self) {
        self.cleanup();
        let left = self.leftovers();
        assert!(left.is_empty(), "cgroup directories left behind: {left:?}");
        std::mem::forget(self);
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn kill_procs_in(dir: &Path) {
    for _ in 0..100 {
        let procs: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        if procs.is_empty() {
            return;
        }
        for p in procs {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A process that runs `script` under `busybox sh` only after [`Gated::release`], so it can be put
/// into a cgroup first. Killed and reaped when dropped.
pub struct Gated {
    pub child: Child,
    gate: Option<ChildStdin>,
}

impl Gated {
    pub fn spawn(script: &str) -> Gated {
        Self::spawn_with(script, |_| {})
    }

    pub fn spawn_with(script: &str, configure: impl FnOnce(&mut Command)) -> Gated {
        let mut cmd = Command::new(BUSYBOX);
        cmd.args(["sh", "-c", &format!("read _gate; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn busybox sh");
        let gate = child.stdin.take();
        Gated { child, gate }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn join(&self, cg: &ContainerCgroup) {
        cg.add_task(self.pid()).expect("add_task");
    }

    pub fn release(&mut self) {
        let mut gate = self.gate.take().expect("released twice");
        gate.write_all(b"go\n").expect("write to the gate");
    }

    pub fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loop device over a file in /dev/shm (tmpfs): a block device whose speed does not depend on
/// the shared machine's disk load. Detached when dropped.
pub struct LoopDev {
    pub path: String,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    pub fn new(size: u64) -> LoopDev {
        assert!(
            Path::new("/dev/loop-control").exists(),
            "this test needs loop devices (/dev/loop-control)"
        );
        let dir = tempfile::tempdir_in("/dev/shm").expect("a tempdir in /dev/shm");
        let backing = dir.path().join("disk");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        let out = Command::new("/usr/sbin/losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output()
            .expect("this test needs losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8(out.stdout).unwrap().trim().to_string();
        LoopDev { path, _dir: dir }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/losetup")
            .args(["-d", &self.path])
            .status();
    }
}

/// A scratch directory on a real block device (tempfile's default /tmp may be a tmpfs).
pub fn disk_tempdir() -> tempfile::TempDir {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}
