//! Shared helpers of the runtime's integration tests: a busybox rootfs in a tempdir, a private state dir
//! per test, and a wrapper running the real `strata` binary. These tests need root and /bin/busybox
//! (busybox-static); a missing prerequisite fails the test with a message naming it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The network devices of the calling thread's network namespace (/proc/thread-self/net/dev).
pub fn net_devices() -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect()
}

/// A unique name for this process and call, safe to use in parallel with other tests and helpers.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (they create namespaces and mounts)"
    );
}

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "hostname", "id", "ip", "mount", "ps", "sleep", "true", "false",
    "grep", "wc", "touch", "mkdir", "readlink", "stat", "kill", "unshare", "env", "pwd", "head",
    "test", "wait", "dd", "tr", "seq", "ping", "nc", "route",
];

/// A test environment: a busybox rootfs and a state dir in one tempdir.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub state: PathBuf,
    /// This test's own parent cgroup (removed on drop), so tests never touch anyone else's.
    pub cgroup_parent: String,
}

impl Env {
    pub fn new() -> Env {
        require_root();
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install busybox-static"
        );
        let tmp = tempfile::Builder::new()
            .prefix("strata-rt-test")
            .tempdir()
            .unwrap();
        let rootfs = tmp.path().join("rootfs");
        for d in [
            "bin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "root",
            "home/user",
        ] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/not-executable"), "#!/bin/sh\n").unwrap();
        let state = tmp.path().join("state");
        let cgroup_parent = unique("strata-test-runtime");
        Env {
            tmp,
            rootfs,
            state,
            cgroup_parent,
        }
    }

    /// `strata --state-dir S ARGS…`, not yet run.
    pub fn strata(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--state-dir").arg(&self.state);
        c.env_remove("STRATA_PHASES");
        c.env("STRATA_CGROUP_PARENT", &self.cgroup_parent);
        c
    }

    /// `strata run --rootfs R EXTRA… -- CMD…` with captured output.
    pub fn run(&self, extra: &[&str], cmd: &[&str]) -> Output {
        self.strata()
            .arg("run")
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(extra)
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `strata exec ID -- /bin/sh -c SCRIPT` with captured output (status not checked).
    pub fn exec_sh(&self, id: &str, script: &str) -> Output {
        self.strata()
            .args(["exec", id, "--", "/bin/sh", "-c", script])
            .output()
            .unwrap()
    }

    /// Runs `sh -c SCRIPT` in a `--rm` container and returns its stdout, asserting success.
    pub fn sh(&self, extra: &[&str], script: &str) -> String {
        let mut args = vec!["--rm"];
        args.extend_from_slice(extra);
        let out = self.run(&args, &["/bin/sh", "-c", script]);
        assert!(
            out.status.success(),
            "container failed: {:?}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Container directories left in the state dir.
    pub fn state_entries(&self) -> Vec<String> {
        match std::fs::read_dir(&self.state) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The directories of this test's parent cgroup, one per hierarchy where it exists.
    pub fn cgroup_parent_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = Path::new("/sys/fs/cgroup");
        let mut candidates = vec![root.join(&self.cgroup_parent)];
        if let Ok(rd) = std::fs::read_dir(root) {
            candidates.extend(rd.flatten().map(|e| e.path().join(&self.cgroup_parent)));
        }
        for c in candidates {
            if c.is_dir() && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Container cgroups left under this test's parent.
    pub fn container_cgroups(&self) -> Vec<PathBuf> {
        self.cgroup_parent_dirs()
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }

    /// Asserts no container state, cgroup, or mount of this test is left.
    pub fn assert_nothing_left(&self) {
        assert!(
            self.container_cgroups().is_empty(),
            "cgroups left behind: {:?}",
            self.container_cgroups()
        );
        assert!(
            self.state_entries().is_empty(),
            "state left behind: {:?}",
            self.state_entries()
        );
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&tmp),
            "a mount under {tmp} is left in the host's mount table"
        );
    }
}

/// Start time of `pid` (field 22 of /proc/PID/stat).
fn start_time(pid: i64) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].split(' ').nth(19)?.parse().ok()
}

impl Env {
    /// SIGKILLs the monitors and pid 1s of containers a failed test left running (checked against their
    /// recorded start times, so a recycled pid is never hit).
    fn kill_leftover_containers(&self) {
        let Ok(rd) = std::fs::read_dir(&self.state) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("state.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            for (pid, start) in [("monitor_pid", "monitor_start"), ("pid", "pid_start")] {
                if let (Some(p), Some(t)) = (v[pid].as_i64(), v[start].as_u64()) {
                    if p > 0 && start_time(p) == Some(t) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(p as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_leftover_containers();
        // Remove this test's parent cgroup (after any container cgroup a failed test left, once empty).
        for _ in 0..300 {
            let left = self.container_cgroups();
            if left.is_empty() {
                break;
            }
            for c in left {
                let _ = std::fs::remove_dir(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for d in self.cgroup_parent_dirs() {
            let _ = std::fs::remove_dir(d);
        }
        // Lazy-unmount anything a failed test left under the tempdir before it is deleted.
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            for line in m.lines() {
                if let Some(mp) = line.split(' ').nth(4).filter(|p| p.starts_with(&tmp)) {
                    let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Number of fds this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Host mounts whose line mentions `needle` (a tempdir path or a container name). Counting all host mounts
/// would race with other tests that mount things in parallel.
pub fn host_mounts_mentioning(needle: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits (up to 20 s, polling) until container `name`'s state says running; returns its state JSON.
pub fn wait_running(env: &Env, name: &str) -> serde_json::Value {
    let path = env.state.join(name).join("state.json");
    for _ in 0..2000 {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if v["status"] == "running" {
                    return v;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("container {name} did not reach running state");
}

/// Waits for a spawned strata, killing it if it does not end within 30 s (so a broken test never hangs).
pub fn wait_child(mut child: std::process::Child) -> Output {
    for _ in 0..3000 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!("strata did not exit: {}", stderr(&out));
}

pub fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Waits (up to 20 s, polling) until `path` exists.
pub fn wait_for_file(path: &Path) {
    for _ in 0..2000 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

/// Ids `strata ps --all` lists.
pub fn ps_all_ids(env: &Env) -> Vec<String> {
    let out = env
        .strata()
        .args(["ps", "--all", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// `Cpus_allowed_list` of a /proc status file.
pub fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in a /proc status file")
        .trim()
        .to_string()
}
