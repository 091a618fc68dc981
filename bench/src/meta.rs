//! Machine metadata recorded with every run, so that figures can be compared across kernels, machines and
//! commits. Every field is read at run time; what cannot be read is recorded as such, never guessed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub kernel_release: String,
    pub kernel_version: String,
    /// "v1", "v2" or "hybrid".
    pub cgroup_mode: String,
    pub cgroup_v1_controllers: Vec<String>,
    pub cgroup_v2_controllers: Vec<String>,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_bytes: u64,
    /// Scaling governor of cpu0, or "unavailable" (e.g. in a VM without cpufreq).
    pub governor: String,
    /// /sys/devices/system/cpu/vulnerabilities/<name> → state.
    pub mitigations: BTreeMap<String, String>,
    pub mount_count: usize,
    pub live_net_namespaces: usize,
    /// Tool → first line of its version output, or "not found: …".
    pub tool_versions: BTreeMap<String, String>,
    pub strata_commit: String,
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// First line of `cmd args` stdout (or stderr), or "not found: …".
pub fn tool_version(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            let text = String::from_utf8_lossy(&text);
            // Prefer the line naming the tool (fuse-overlayfs prints fusermount3's version first).
            let name = Path::new(cmd)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(cmd);
            let line = text
                .lines()
                .find(|l| l.contains(name))
                .or_else(|| text.lines().next());
            line.unwrap_or("").trim().to_string()
        }
        Err(e) => format!("not found: {e}"),
    }
}

/// cgroup mode of this host: "v2" (unified at /sys/fs/cgroup), "hybrid" (v1 controllers plus a cgroup2
/// mount at /sys/fs/cgroup/unified) or "v1".
pub fn cgroup_mode() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        "hybrid"
    } else {
        "v1"
    }
}

/// The cgroup2 mount point, if any.
pub fn cgroup2_root() -> Option<&'static Path> {
    match cgroup_mode() {
        "v2" => Some(Path::new("/sys/fs/cgroup")),
        "hybrid" => Some(Path::new("/sys/fs/cgroup/unified")),
        _ => None,
    }
}

/// v1 controllers mounted under /sys/fs/cgroup (empty on pure v2).
pub fn cgroup_v1_controllers() -> Vec<String> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut out: Vec<String> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2] == "cgroup")
                .then(|| f[3].split(',').map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .filter(|o| {
            !["rw", "ro", "nosuid", "nodev", "noexec", "relatime"].contains(&o.as_str())
                && !o.contains('=')
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn cgroup_v2_controllers() -> Vec<String> {
    cgroup2_root()
        .and_then(|r| read_trim(r.join("cgroup.controllers")))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Distinct network namespaces held by live processes (what the kernel must keep; bind-mounted netns
/// files of `ip netns` are counted too).
pub fn live_net_namespaces() -> usize {
    let mut seen = std::collections::BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Ok(link) = std::fs::read_link(e.path().join("ns/net")) {
                seen.insert(link);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        seen.extend(dir.flatten().map(|e| e.path()));
    }
    seen.len()
}

fn strata_commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("git")
        .args(["-C", dir, "rev-parse", "HEAD"])
        .output();
    let commit = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => return "unknown (not a git checkout)".into(),
    };
    let dirty = Command::new("git")
        .args(["-C", dir, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}

pub fn collect() -> Machine {
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let mut mitigations = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu/vulnerabilities") {
        for e in dir.flatten() {
            if let Some(v) = read_trim(e.path()) {
                mitigations.insert(e.file_name().to_string_lossy().into_owned(), v);
            }
        }
    }
    let mut tool_versions = BTreeMap::new();
    tool_versions.insert(
        "docker".into(),
        tool_version("docker", &["version", "--format", "{{.Server.Version}}"]),
    );
    tool_versions.insert("runc".into(), tool_version("runc", &["--version"]));
    tool_versions.insert("crun".into(), tool_version("crun", &["--version"]));
    tool_versions.insert(
        "fuse-overlayfs".into(),
        tool_version("fuse-overlayfs", &["--version"]),
    );
    tool_versions.insert(
        "hyperfine".into(),
        tool_version("hyperfine", &["--version"]),
    );
    Machine {
        hostname: field(|u| u.nodename()),
        kernel_release: field(|u| u.release()),
        kernel_version: field(|u| u.version()),
        cgroup_mode: cgroup_mode().into(),
        cgroup_v1_controllers: cgroup_v1_controllers(),
        cgroup_v2_controllers: cgroup_v2_controllers(),
        cpu_model,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_bytes,
        governor: read_trim("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
            .unwrap_or_else(|| "unavailable (no cpufreq)".into()),
        mitigations,
        mount_count: mount_count(),
        live_net_namespaces: live_net_namespaces(),
        tool_versions,
        strata_commit: strata_commit(),
    }
}
