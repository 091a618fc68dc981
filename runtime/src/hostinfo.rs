//! What this host offers strata: kernel, cgroup mode and controllers, namespaces, FUSE (and its
//! passthrough), kernel overlayfs. Used by `strata info` and by the bench's run metadata.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::cgroups::{self, CgroupMode};

/// Where a FUSE passthrough verdict came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passthrough {
    pub available: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub strata_version: &'static str,
    pub kernel_release: String,
    pub kernel_version: String,
    pub cgroup_mode: CgroupMode,
    pub cgroup_controllers: Vec<String>,
    /// Namespace kinds this kernel supports (entries of /proc/self/ns).
    pub namespaces: Vec<String>,
    /// Unprivileged user namespaces possible (user.max_user_namespaces > 0).
    pub user_namespaces_enabled: bool,
    /// /dev/fuse exists and opens.
    pub fuse: bool,
    pub fuse_passthrough: Passthrough,
    /// The kernel overlay file system is registered (/proc/filesystems).
    pub overlay: bool,
}

/// Parses "6.18.44-foo" into (6, 18).
pub fn kernel_major_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The value of `name` in a kernel config text ("y", "m", or None when unset).
pub fn kernel_config_value(config: &str, name: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// The running kernel's config, from /proc/config.gz or /boot/config-RELEASE, if readable.
fn kernel_config(release: &str) -> Option<String> {
    if let Ok(f) = std::fs::File::open("/proc/config.gz") {
        let mut s = String::new();
        if flate2::read::GzDecoder::new(f)
            .read_to_string(&mut s)
            .is_ok()
        {
            return Some(s);
        }
    }
    std::fs::read_to_string(format!("/boot/config-{release}")).ok()
}

/// FUSE passthrough (kernel 6.9+, CONFIG_FUSE_PASSTHROUGH): decided from the kernel config when
/// it is readable, else from the version alone; needs a usable /dev/fuse either way.
pub fn fuse_passthrough(release: &str, fuse: bool, config: Option<&str>) -> Passthrough {
    let version_ok = kernel_major_minor(release).is_some_and(|v| v >= (6, 9));
    let (available, reason) = if !fuse {
        (
            false,
            "/dev/fuse is missing or cannot be opened".to_string(),
        )
    } else if !version_ok {
        (false, format!("kernel {release} is older than 6.9"))
    } else {
        match config.map(|c| kernel_config_value(c, "CONFIG_FUSE_PASSTHROUGH")) {
            Some(Some(v)) if v == "y" => (true, "CONFIG_FUSE_PASSTHROUGH=y".to_string()),
            Some(_) => (false, "CONFIG_FUSE_PASSTHROUGH is not set".to_string()),
            None => (
                true,
                format!("kernel {release} ≥ 6.9 (kernel config not readable)"),
            ),
        }
    };
    Passthrough { available, reason }
}

/// True if `fs` is listed in /proc/filesystems-style text.
/// This mount namespace's mount points under any of `roots`, deepest first (the order to unmount them in).
pub fn mounts_under(roots: &[&Path]) -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<std::path::PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| roots.iter().any(|r| p.starts_with(r)))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\040` …).
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn filesystem_listed(proc_filesystems: &str, fs: &str) -> bool {
    proc_filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs))
}

impl HostInfo {
    pub fn gather() -> HostInfo {
        let (kernel_release, kernel_version) = nix::sys::utsname::uname()
            .map(|u| {
                (
                    u.release().to_string_lossy().into_owned(),
                    u.version().to_string_lossy().into_owned(),
                )
            })
            .unwrap_or_default();
        let mut namespaces: Vec<String> = std::fs::read_dir("/proc/self/ns")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !n.ends_with("_for_children"))
                    .collect()
            })
            .unwrap_or_default();
        namespaces.sort();
        let user_namespaces_enabled = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
        let fuse = Path::new("/dev/fuse").exists()
            && std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse")
                .is_ok();
        let config = kernel_config(&kernel_release);
        let fuse_passthrough = fuse_passthrough(&kernel_release, fuse, config.as_deref());
        let overlay = std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|t| filesystem_listed(&t, "overlay"));
        HostInfo {
            strata_version: env!("CARGO_PKG_VERSION"),
            kernel_release,
            kernel_version,
            cgroup_mode: cgroups::detect(),
            cgroup_controllers: cgroups::available_controllers(),
            namespaces,
            user_namespaces_enabled,
            fuse,
            fuse_passthrough,
            overlay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mountinfo("/plain\\0"), "/plain\\0");
    }

    #[test]
    fn versions() {
        assert_eq!(kernel_major_minor("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_major_minor("5.4.0"), Some((5, 4)));
        assert_eq!(kernel_major_minor("x"), None);
    }

    #[test]
    fn passthrough_rules() {
        let cfg = "# comment\nCONFIG_FUSE_FS=y\nCONFIG_FUSE_PASSTHROUGH=y\n";
        assert!(fuse_passthrough("6.18.0", true, Some(cfg)).available);
        assert!(!fuse_passthrough("6.18.0", false, Some(cfg)).available);
        assert!(!fuse_passthrough("6.8.0", true, Some(cfg)).available);
        assert!(!fuse_passthrough("6.10.0", true, Some("CONFIG_FUSE_FS=y\n")).available);
        assert!(fuse_passthrough("6.10.0", true, None).available);
        assert_eq!(
            kernel_config_value(cfg, "CONFIG_FUSE_FS").as_deref(),
            Some("y")
        );
    }

    #[test]
    fn filesystems() {
        let t = "nodev\tsysfs\n\text4\nnodev\toverlay\n";
        assert!(filesystem_listed(t, "overlay"));
        assert!(filesystem_listed(t, "ext4"));
        assert!(!filesystem_listed(t, "fuse"));
    }

    #[test]
    fn gathers_this_host() {
        let info = HostInfo::gather();
        assert!(
            kernel_major_minor(&info.kernel_release).is_some(),
            "{info:?}"
        );
        for ns in ["mnt", "net", "pid", "uts", "ipc", "user", "cgroup"] {
            assert!(
                info.namespaces.iter().any(|n| n == ns),
                "{ns} missing: {info:?}"
            );
        }
        assert!(!info.cgroup_controllers.is_empty());
    }
}
