//! Docker driving strata as an OCI runtime: `docker run --runtime strata`, with runc under the same
//! daemon as the oracle. Needs a Docker daemon that has the `strata` runtime registered (scripts/docker-up
//! starts one with it) and the strata-busybox image loaded (scripts/setup). Every container is named
//! uniquely and removed (`docker rm -f`) when its guard drops, also when a test fails.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const IMAGE: &str = "strata-busybox:latest";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static CHECKED: std::sync::Once = std::sync::Once::new();

pub fn unique(prefix: &str) -> String {
    format!(
        "strata-dt-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails (naming what is missing) unless the daemon answers, knows the strata runtime and has the image.
pub fn require_docker() {
    CHECKED.call_once(|| {
        let info = Command::new("docker")
            .args(["info", "--format", "{{json .Runtimes}}"])
            .output();
        let runtimes = match info {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => panic!(
                "Docker is required: `docker info` failed: {} — start the daemon with scripts/docker-up",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("Docker is required: cannot run `docker`: {e} (run scripts/setup)"),
        };
        let v: serde_json::Value = serde_json::from_str(&runtimes).expect("docker info runtimes JSON");
        assert!(
            v.get("strata").is_some(),
            "the Docker daemon has no `strata` runtime (it has {runtimes}): scripts/docker-up registers it"
        );
        let path = v["strata"]["path"].as_str().unwrap_or("").to_string();
        assert!(
            std::path::Path::new(&path).is_file(),
            "Docker's strata runtime {path} is missing: run scripts/setup to install strata"
        );
        let img = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .unwrap();
        assert!(
            img.status.success(),
            "image {IMAGE} is not loaded into Docker: run scripts/setup"
        );
    });
}

/// `docker ARGS`, with a 120 s guard so a hung daemon fails the test instead of hanging it.
pub fn docker(args: &[&str]) -> Output {
    let child = Command::new("timeout")
        .arg("120")
        .arg("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning docker");
    child.wait_with_output().unwrap()
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `docker ARGS` that must succeed; its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed ({}): {}",
        o.status,
        err(&o)
    );
    out(&o)
}

/// `run MODE… --name NAME --runtime RUNTIME --network none EXTRA… IMAGE CMD…`: what every test's
/// `docker run` says.
pub fn run_args<'a>(
    mode: &[&'a str],
    name: &'a str,
    runtime: &'a str,
    extra: &[&'a str],
    cmd: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend_from_slice(mode);
    args.extend_from_slice(&["--name", name, "--runtime", runtime, "--network", "none"]);
    args.extend_from_slice(extra);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    args
}

/// A named container removed on drop, with what the test needs to prove nothing was left behind.
pub struct Container {
    pub name: String,
    /// The full id, once known (`docker inspect`), to look for leftovers after removal.
    pub id: Option<String>,
}

impl Container {
    pub fn named(prefix: &str) -> Container {
        require_docker();
        Container {
            name: unique(prefix),
            id: None,
        }
    }

    /// `docker run -d --runtime RUNTIME --network none EXTRA… IMAGE CMD…`; returns once it runs.
    pub fn start(prefix: &str, runtime: &str, extra: &[&str], cmd: &[&str]) -> Container {
        let mut c = Container::named(prefix);
        let name = c.name.clone();
        let id = docker_ok(&run_args(&["-d"], &name, runtime, extra, cmd))
            .trim()
            .to_string();
        assert_eq!(id.len(), 64, "docker run -d printed {id:?} for {name}");
        c.id = Some(id);
        c
    }

    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, &self.name])
            .trim()
            .to_string()
    }

    /// The container's init pid on the host.
    pub fn pid(&self) -> i32 {
        self.inspect("{{.State.Pid}}").parse().unwrap()
    }

    /// Waits (≤ 30 s) until the container's status is `status`.
    pub fn wait_status(&self, status: &str) {
        for _ in 0..300 {
            if self.inspect("{{.State.Status}}") == status {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} never became {status} (is {})",
            self.name,
            self.inspect("{{.State.Status}}")
        );
    }

    pub fn exit_code(&self) -> i32 {
        self.inspect("{{.State.ExitCode}}").parse().unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The host path of the container process `pid`'s cgroup for `controller` (v1: that hierarchy; v2: the
/// unified one), read from /proc/PID/cgroup and the host's mounts.
pub fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if v2 && ctrls.is_empty() {
            return PathBuf::from(format!("/sys/fs/cgroup{path}"));
        }
        if ctrls.split(',').any(|c| c == controller) {
            let mount = if controller == "cpu" {
                // v1 co-mounts cpu with cpuacct under one of several names.
                ["cpu", "cpu,cpuacct"]
                    .iter()
                    .map(|m| PathBuf::from(format!("/sys/fs/cgroup/{m}")))
                    .find(|p| p.join("cpu.cfs_quota_us").exists())
                    .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup/cpu"))
            } else {
                PathBuf::from(format!("/sys/fs/cgroup/{controller}"))
            };
            return PathBuf::from(format!("{}{path}", mount.display()));
        }
    }
    panic!("pid {pid} has no {controller} cgroup in {text}");
}

/// Reads a cgroup file, trimmed.
pub fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

/// "19.6MiB" → bytes (docker stats' sizes).
pub fn parse_size(s: &str) -> f64 {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().unwrap_or_else(|_| panic!("size {s:?}"));
    let mult = match unit {
        "B" | "" => 1.0,
        "KiB" | "kB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other:?} in {s:?}"),
    };
    n * mult
}

/// Leftovers of a removed container `id` on the host: Docker's runtime state dir, cgroup dirs and mounts
/// that name it.
pub fn leftovers(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for root in [
        "/run/docker/runtime-runc/moby",
        "/run/docker/runtime-strata/moby",
    ] {
        let p = PathBuf::from(root).join(id);
        if p.exists() {
            found.push(p.display().to_string());
        }
    }
    if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup") {
        for d in dirs.flatten() {
            for sub in [
                d.path().join("docker").join(id),
                d.path().join(format!("system.slice/docker-{id}.scope")),
            ] {
                if sub.exists() {
                    found.push(sub.display().to_string());
                }
            }
        }
    }
    let direct = PathBuf::from("/sys/fs/cgroup/docker").join(id);
    if direct.exists() {
        found.push(direct.display().to_string());
    }
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
    {
        if line.contains(id) {
            found.push(line.to_string());
        }
    }
    found
}

/// Runs `docker ARGS` under a pseudo-terminal (script(1)) with `input` typed into it; returns (exit
/// status, what the terminal showed with CRs removed).
pub fn docker_in_pty(args: &str, input: &str) -> (Option<i32>, String) {
    let mut child = Command::new("timeout")
        .args([
            "60",
            "script",
            "-qec",
            &format!("docker {args}"),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) (util-linux) is required for the -it tests");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    (o.status.code(), out(&o).replace('\r', ""))
}
