//! The OCI `cgroup` mount: the container's own cgroups, read-only, at /sys/fs/cgroup (as Docker and runc
//! provide it). With a private cgroup namespace a fresh mount is rooted at the container's cgroup.
//!
//! - cgroup v2: one `cgroup2` mount.
//! - v1 / hybrid: a tmpfs with one mount per host hierarchy (named like the host's mountpoints, with
//!   symlinks for co-mounted controllers such as cpu -> cpu,cpuacct), then the tmpfs is made read-only.
//!   A user namespace may not mount cgroup v1, so there each v1 hierarchy is a read-only bind of the
//!   host directory of the container's cgroup instead (cgroup2 can still be mounted fresh).
//! - Without a cgroup namespace of its own, cgroup2 too is a read-only bind (of the container's cgroup,
//!   or on a hybrid host of the unified cgroup it inherited): a fresh cgroup2 mount from the host's
//!   cgroup namespace shows the host's whole tree, re-applies its mount options host-wide (nsdelegate,
//!   memory_recursiveprot, favordynmods … are system-wide and set by every such mount), and cost up to
//!   20 ms here.
//!
//! The host's hierarchies are read from /proc/self/cgroup in the parent; the child only mounts.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{MountEntry, RootfsError};
use crate::cgroups::CgroupMode;

const HOST_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One cgroup filesystem mounted on the host under /sys/fs/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Mountpoint relative to /sys/fs/cgroup ("" for a cgroup2 mounted on /sys/fs/cgroup itself).
    pub name: String,
    /// cgroup2 rather than a v1 hierarchy.
    pub v2: bool,
    /// The v1 superblock options naming the hierarchy ("memory", "cpu,cpuacct", "name=systemd").
    pub options: String,
    /// This process's cgroup in the hierarchy ("/" for the root).
    pub path: String,
}

/// How a container that cannot mount its cgroups fresh sees them: binds of its own cgroup dirs.
#[derive(Debug, Clone, Copy)]
pub struct CgroupBinds<'a> {
    /// The container's cgroup below each hierarchy's root ("strata/<id>").
    pub rel: &'a str,
    /// It shares the host's cgroup namespace (else: a user namespace, which may not mount cgroup v1).
    pub host_ns: bool,
}

/// The host's cgroup hierarchies from /proc/self/cgroup text ("ID:CONTROLLERS:PATH" lines) and the
/// cgroup mode. Mountpoints are named as systemd (and Docker) name them: by the controller list, a named
/// hierarchy by its name, the hybrid cgroup2 "unified".
pub fn parse_proc_cgroup(text: &str, mode: CgroupMode) -> Vec<Hierarchy> {
    if mode == CgroupMode::V2 {
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        return vec![Hierarchy {
            name: String::new(),
            v2: true,
            options: String::new(),
            path: path.to_string(),
        }];
    }
    let mut found: Vec<(u32, Hierarchy)> = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(ctrls)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else {
            continue;
        };
        let path = f.next().unwrap_or("/").to_string();
        let h = if id == 0 {
            if mode != CgroupMode::Hybrid {
                continue;
            }
            Hierarchy {
                name: "unified".into(),
                v2: true,
                options: String::new(),
                path,
            }
        } else {
            let name = ctrls
                .split(',')
                .map(|c| c.strip_prefix("name=").unwrap_or(c))
                .collect::<Vec<_>>()
                .join(",");
            Hierarchy {
                name,
                v2: false,
                options: ctrls.to_string(),
                path,
            }
        };
        if !h.name.is_empty() && !h.name.contains('/') {
            found.push((id, h));
        }
    }
    // By hierarchy id, the unified (id 0) last.
    found.sort_by_key(|(id, _)| (*id == 0, *id));
    found.into_iter().map(|(_, h)| h).collect()
}

/// The host's cgroup hierarchies. Read from /proc/self/cgroup rather than mountinfo: it is a fraction
/// of the size and reading it takes no mount-table lock that concurrent container starts contend on.
pub fn host_hierarchies() -> Vec<Hierarchy> {
    let mode = crate::cgroups::detect();
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|t| parse_proc_cgroup(&t, mode))
        .unwrap_or_default()
}

/// The prepared mounts of /sys/fs/cgroup.
#[derive(Debug, Clone)]
pub struct CgroupFs {
    mounts: Vec<MountEntry>,
    /// Of a fresh v1 layout: the hierarchy each of `mounts[1..]` mounts, in order.
    hierarchies: Vec<Hierarchy>,
    /// (link, target) symlinks relative to the rootfs, made before `seal`.
    links: Vec<(PathBuf, String)>,
    /// Remounts the tmpfs read-only once it is populated.
    seal: Option<MountEntry>,
}

impl CgroupFs {
    /// Expands the OCI cgroup mount `m` (its destination and flags) over the host's hierarchies.
    /// `binds`: the container's cgroup dirs are bound instead of mounting v1 fresh (and cgroup2 too
    /// when it shares the host's cgroup namespace).
    pub fn plan(
        m: &MountEntry,
        hierarchies: &[Hierarchy],
        binds: Option<CgroupBinds<'_>>,
    ) -> CgroupFs {
        // The spec's propagation and bind options (podman sends "rprivate") would make the fresh
        // tmpfs/cgroup mounts fail with EINVAL; only the plain mount flags carry over.
        let plain = m.flags
            - (MsFlags::MS_BIND
                | MsFlags::MS_REC
                | MsFlags::MS_PRIVATE
                | MsFlags::MS_SHARED
                | MsFlags::MS_SLAVE
                | MsFlags::MS_UNBINDABLE);
        let flags = plain | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let entry = |target: PathBuf, fstype: &str, data: Option<String>| MountEntry {
            target,
            fstype: Some(fstype.to_string()),
            source: Some(PathBuf::from(fstype)),
            flags,
            data,
            bind_remount: false,
        };
        let bind = |target: PathBuf, source: PathBuf| MountEntry {
            target,
            fstype: None,
            source: Some(source),
            flags: flags | MsFlags::MS_BIND,
            data: None,
            bind_remount: true,
        };
        // cgroup2 (the whole of a v2 host, or a hybrid host's unified) in the host's namespace: a bind of
        // the container's own cgroup, or of the one it inherited where strata makes none (unified).
        let cgroup2 = |h: &Hierarchy, target: PathBuf| match binds {
            Some(b) if b.host_ns => {
                let own = if h.name.is_empty() {
                    b.rel
                } else {
                    h.path.as_str()
                };
                let host = Path::new(HOST_CGROUP_ROOT).join(&h.name);
                bind(target, host.join(own.trim_start_matches('/')))
            }
            _ => entry(target, "cgroup2", None),
        };
        if let Some(h) = hierarchies.iter().find(|h| h.v2 && h.name.is_empty()) {
            return CgroupFs {
                mounts: vec![cgroup2(h, m.target.clone())],
                hierarchies: Vec::new(),
                links: Vec::new(),
                seal: None,
            };
        }
        let rw = flags - MsFlags::MS_RDONLY;
        let mut mounts = vec![MountEntry {
            target: m.target.clone(),
            fstype: Some("tmpfs".into()),
            source: Some(PathBuf::from("tmpfs")),
            flags: rw,
            data: Some("mode=755".into()),
            bind_remount: false,
        }];
        let mut links = Vec::new();
        let mounted: Vec<Hierarchy> = hierarchies
            .iter()
            .filter(|h| !h.name.is_empty())
            .cloned()
            .collect();
        for h in &mounted {
            let target = m.target.join(&h.name);
            if h.v2 {
                mounts.push(cgroup2(h, target));
                continue;
            }
            match binds {
                Some(b) => mounts.push(bind(
                    target,
                    Path::new(HOST_CGROUP_ROOT).join(&h.name).join(b.rel),
                )),
                None => mounts.push(entry(target, "cgroup", Some(h.options.clone()))),
            }
            // Co-mounted controllers are also reachable by each name, as on the host.
            if h.name.contains(',') {
                for c in h.name.split(',') {
                    if !hierarchies.iter().any(|o| o.name == c) {
                        links.push((m.target.join(c), h.name.clone()));
                    }
                }
            }
        }
        let seal = m.flags.contains(MsFlags::MS_RDONLY).then(|| MountEntry {
            target: m.target.clone(),
            fstype: None,
            source: None,
            flags: flags | MsFlags::MS_REMOUNT,
            data: None,
            bind_remount: false,
        });
        CgroupFs {
            mounts,
            hierarchies: mounted,
            links,
            seal,
        }
    }

    /// Mounts relative to the current directory (the rootfs), after /sys.
    /// True when every mount is a fresh cgroup/tmpfs mount (none binds a host cgroup dir), so they can
    /// be made after pivot_root.
    pub fn fresh(&self) -> bool {
        self.mounts
            .iter()
            .all(|m| !m.flags.contains(MsFlags::MS_BIND))
    }

    /// True when the absolute container path `path` lies under (or is) the cgroup mounts' root.
    pub fn covers(&self, path: &Path) -> bool {
        let rel = path.strip_prefix("/").unwrap_or(path);
        self.mounts
            .first()
            .is_some_and(|m| rel.starts_with(m.target.strip_prefix("/").unwrap_or(&m.target)))
    }

    /// The whole of a fresh v1 layout, detached, for the container process to attach with one
    /// move_mount ([`CgroupFs::mount_prepared`]): the tmpfs with its mount points and links, and in it
    /// each hierarchy as a bind of the container's own cgroup directory `rel` ("strata/<id>"; of the
    /// cgroup it inherits for the hybrid unified hierarchy), with the mount's flags, the tmpfs sealed
    /// last. Made by strata while the container process sets up the rest of its rootfs, off that
    /// process's path, the longer one of the start (a dozen mkdirs and mounts). Inside the container's
    /// cgroup namespace a bind of its cgroup shows what a fresh mount there shows: the same directory as
    /// its root, and "/" as that root in mountinfo (cgroup paths are shown relative to the reader's
    /// cgroup namespace). None for other layouts.
    pub fn prepared_tree(&self, rel: &str) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        use nix::sys::stat::{FchmodatFlags, Mode, fchmodat, mkdirat};
        use std::os::fd::AsFd;
        let top = self
            .mounts
            .first()
            .filter(|m| self.fresh() && m.fstype.as_deref() == Some("tmpfs"))?;
        let rel_to_top = |p: &Path| p.strip_prefix(&top.target).map(Path::to_path_buf);
        let make = || -> std::io::Result<std::os::fd::OwnedFd> {
            let params = super::data_params(top.data.as_deref().unwrap_or_default());
            let tree = crate::sys::fsmount_detached(c"tmpfs", "tmpfs", &params, top.flags)?;
            let bad = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
            // As the container process makes them (its umask is 0 then); strata's umask may differ.
            let all = Mode::from_bits_truncate(0o777);
            for (m, h) in self.mounts[1..].iter().zip(&self.hierarchies) {
                let dir = rel_to_top(&m.target).map_err(bad)?;
                mkdirat(&tree, &dir, all)?;
                fchmodat(&tree, &dir, all, FchmodatFlags::FollowSymlink)?;
                let own = if h.v2 { h.path.as_str() } else { rel };
                let source = Path::new(HOST_CGROUP_ROOT)
                    .join(&h.name)
                    .join(own.trim_start_matches('/'));
                let bind = crate::sys::open_tree_clone(&source)?;
                crate::sys::set_mount_flags(bind.as_fd(), m.flags)?;
                crate::sys::move_mount_into(bind.as_fd(), tree.as_fd(), &dir)?;
            }
            for (link, target) in &self.links {
                nix::unistd::symlinkat(target.as_str(), &tree, &rel_to_top(link).map_err(bad)?)?;
            }
            if let Some(s) = &self.seal {
                // As the remount that seals it otherwise: the mount and its tmpfs read-only.
                crate::sys::set_mount_flags(tree.as_fd(), s.flags)?;
                if s.flags.contains(MsFlags::MS_RDONLY) {
                    crate::sys::make_filesystem_readonly(tree.as_fd())?;
                }
            }
            Ok(tree)
        };
        Some(make())
    }

    /// Attaches the layout strata prepared ([`CgroupFs::prepared_tree`]), relative to the rootfs.
    pub fn mount_prepared(&self, tree: std::os::fd::OwnedFd) -> Result<(), RootfsError> {
        let Some(top) = self.mounts.first() else {
            return Ok(());
        };
        super::attach(
            std::os::fd::AsFd::as_fd(&tree),
            &top.target,
            "the cgroup mounts",
        )
    }

    pub fn mount_relative(&self) -> Result<(), RootfsError> {
        for m in &self.mounts {
            m.mount_relative()?;
        }
        for (link, target) in &self.links {
            std::os::unix::fs::symlink(target, link).map_err(|e| RootfsError::Sys {
                what: format!("linking /{} to {target}", link.display()),
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        }
        if let Some(s) = &self.seal {
            s.mount_relative()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
9:name=systemd:/
4:memory:/x/y
2:cpu,cpuacct:/
0::/
";

    fn hybrid() -> Vec<Hierarchy> {
        parse_proc_cgroup(HYBRID, CgroupMode::Hybrid)
    }

    fn oci_entry() -> MountEntry {
        MountEntry {
            target: PathBuf::from("sys/fs/cgroup"),
            fstype: Some("cgroup".into()),
            source: Some(PathBuf::from("cgroup")),
            flags: MsFlags::MS_RDONLY | MsFlags::MS_NOSUID,
            data: None,
            bind_remount: false,
        }
    }

    #[test]
    fn hierarchies_named_like_systemds_mountpoints() {
        let names: Vec<(String, bool, String)> = hybrid()
            .into_iter()
            .map(|h| (h.name, h.v2, h.options))
            .collect();
        let want = [
            ("cpu,cpuacct", false, "cpu,cpuacct"),
            ("memory", false, "memory"),
            ("systemd", false, "name=systemd"),
            ("unified", true, ""),
        ];
        assert_eq!(names.len(), want.len());
        for (got, want) in names.iter().zip(want) {
            assert_eq!((got.0.as_str(), got.1, got.2.as_str()), want);
        }
        // Pure v1 has no cgroup2 mount; pure v2 is one mount at the top.
        assert_eq!(parse_proc_cgroup(HYBRID, CgroupMode::V1).len(), 3);
        let v2 = parse_proc_cgroup("0::/user.slice\n", CgroupMode::V2);
        assert!(v2.len() == 1 && v2[0].v2 && v2[0].name.is_empty());
    }

    #[test]
    fn the_prepared_tree_has_every_hierarchy_bound_read_only_in_a_sealed_tmpfs() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test needs root (it mounts a tmpfs and binds cgroup dirs, detached)");
        }
        if crate::cgroups::detect() == CgroupMode::V2 {
            panic!("this test needs a cgroup v1 or hybrid host (it prepares the v1 layout)");
        }
        use nix::sys::statvfs::{FsFlags, statvfs};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::PermissionsExt;
        let hierarchies = host_hierarchies();
        let fs = CgroupFs::plan(&oci_entry(), &hierarchies, None);
        // Binds of each hierarchy's root (the container's cgroup is "" below it here).
        let tree = fs.prepared_tree("").expect("a v1 layout").unwrap();
        let root = PathBuf::from(format!("/proc/self/fd/{}", tree.as_raw_fd()));
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut expected: Vec<String> = hierarchies.iter().map(|h| h.name.clone()).collect();
        expected.extend(
            fs.links
                .iter()
                .map(|(l, _)| l.file_name().unwrap().to_string_lossy().into_owned()),
        );
        expected.sort();
        assert_eq!(names, expected);
        assert!(statvfs(&root).unwrap().flags().contains(FsFlags::ST_RDONLY));
        for h in &hierarchies {
            let at = root.join(&h.name);
            // Each one the hierarchy, bound read-only (and nosuid): its control files are there.
            assert!(
                at.join("cgroup.procs").exists(),
                "{}: not the hierarchy",
                h.name
            );
            let flags = statvfs(&at).unwrap().flags();
            assert!(
                flags.contains(FsFlags::ST_RDONLY) && flags.contains(FsFlags::ST_NOSUID),
                "{}: {flags:?}",
                h.name
            );
            let mode = std::fs::symlink_metadata(&at).unwrap().permissions().mode();
            assert_eq!(mode & 0o170000, 0o040000, "{}: a directory", h.name);
        }
        for (link, target) in &fs.links {
            let name = link.file_name().unwrap();
            assert_eq!(
                std::fs::read_link(root.join(name)).unwrap(),
                Path::new(target)
            );
        }
        // Attached (in a private mount namespace): the tmpfs sealed, mount and superblock, as the
        // remount that seals a fresh layout leaves it; each hierarchy read-only, shown with its root.
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_path_buf();
        let shown = crate::test_support::in_private_mount_ns(move || {
            crate::sys::move_mount_to(std::os::fd::AsFd::as_fd(&tree), &at).unwrap();
            let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            let at = at.to_string_lossy().into_owned();
            info.lines()
                .filter(|l| l.split(' ').nth(4).is_some_and(|mp| mp.starts_with(&at)))
                .map(|l| l.split(' ').skip(3).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
        });
        assert_eq!(shown.len(), 1 + hierarchies.len(), "{shown:#?}");
        assert!(
            shown[0].contains(" ro,") && shown[0].ends_with("- tmpfs tmpfs ro,mode=755"),
            "{}",
            shown[0]
        );
        for line in &shown[1..] {
            assert!(
                line.starts_with("/ ") && line.contains(" ro,nosuid"),
                "{line}"
            );
        }
        // A layout with binds is not prepared.
        let binds = CgroupBinds {
            rel: "x",
            host_ns: false,
        };
        assert!(
            CgroupFs::plan(&oci_entry(), &hybrid(), Some(binds))
                .prepared_tree("x")
                .is_none()
        );
    }

    #[test]
    fn v1_is_a_sealed_tmpfs_of_readonly_hierarchies_with_links() {
        let fs = CgroupFs::plan(&oci_entry(), &hybrid(), None);
        let kinds: Vec<(String, Option<&str>, Option<&str>)> = fs
            .mounts
            .iter()
            .map(|m| {
                (
                    m.target.display().to_string(),
                    m.fstype.as_deref(),
                    m.data.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            kinds[0],
            ("sys/fs/cgroup".into(), Some("tmpfs"), Some("mode=755"))
        );
        assert!(!fs.mounts[0].flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(
            kinds[1],
            (
                "sys/fs/cgroup/cpu,cpuacct".into(),
                Some("cgroup"),
                Some("cpu,cpuacct")
            )
        );
        assert_eq!(
            kinds[4],
            ("sys/fs/cgroup/unified".into(), Some("cgroup2"), None)
        );
        assert!(
            fs.mounts[1..]
                .iter()
                .all(|m| m.flags.contains(MsFlags::MS_RDONLY))
        );
        assert_eq!(fs.links.len(), 2);
        assert!(fs.seal.is_some());
    }

    #[test]
    fn userns_binds_the_containers_v1_cgroups_and_v2_is_one_mount() {
        let userns = CgroupBinds {
            rel: "strata/c1",
            host_ns: false,
        };
        let fs = CgroupFs::plan(&oci_entry(), &hybrid(), Some(userns));
        assert_eq!(
            fs.mounts[2].source.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/strata/c1"))
        );
        assert!(fs.mounts[2].bind_remount && fs.mounts[2].fstype.is_none());
        let v2 = parse_proc_cgroup("0::/\n", CgroupMode::V2);
        let fs = CgroupFs::plan(&oci_entry(), &v2, None);
        assert_eq!(fs.mounts.len(), 1);
        assert_eq!(fs.mounts[0].fstype.as_deref(), Some("cgroup2"));
        assert!(fs.seal.is_none());
    }

    #[test]
    fn in_the_hosts_cgroup_namespace_cgroup2_is_bound_never_mounted_fresh() {
        let host = CgroupBinds {
            rel: "strata/c1",
            host_ns: true,
        };
        let hybrid = parse_proc_cgroup("4:memory:/x\n0::/user.slice/u\n", CgroupMode::Hybrid);
        let fs = CgroupFs::plan(&oci_entry(), &hybrid, Some(host));
        let unified = fs.mounts.last().unwrap();
        assert_eq!(unified.target, Path::new("sys/fs/cgroup/unified"));
        assert_eq!(
            unified.source.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/user.slice/u"))
        );
        assert!(unified.fstype.is_none() && unified.bind_remount);
        assert!(!fs.fresh());
        let v2 = parse_proc_cgroup("0::/user.slice\n", CgroupMode::V2);
        let fs = CgroupFs::plan(&oci_entry(), &v2, Some(host));
        assert_eq!(fs.mounts.len(), 1);
        assert_eq!(
            fs.mounts[0].source.as_deref(),
            Some(Path::new("/sys/fs/cgroup/strata/c1"))
        );
        assert!(fs.mounts[0].fstype.is_none());
        assert!(
            fs.mounts
                .iter()
                .all(|m| m.flags.contains(MsFlags::MS_RDONLY))
        );
    }
}
