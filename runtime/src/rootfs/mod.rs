//! The container's filesystem: the rootfs (bind | kernel overlay | strata-overlayfs), the spec's mounts
//! (/proc, /dev, /sys …), device nodes, pivot_root, masked and read-only paths.
//!
//! [`Plan`] is built in the parent from the spec (all parsing and allocation happens there); the child only
//! walks it with [`Plan::enter`] inside its new mount namespace.

mod cgroupfs;
mod dev;
mod mounts;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::Spec;

pub use cgroupfs::{CgroupBinds, CgroupFs, Hierarchy, host_hierarchies};
pub use mounts::{MountEntry, data_params, known_mount_options, parse_options};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    #[error("mount target {0} is a symlink in the rootfs; refusing to follow it")]
    SymlinkTarget(PathBuf),
    #[error("spec has no root path")]
    NoRoot,
    #[error("{0}")]
    Spec(String),
}

/// Attaches the detached mount `tree` at `target` (move_mount); `what` names it in the error.
fn attach(tree: std::os::fd::BorrowedFd<'_>, target: &Path, what: &str) -> Result<(), RootfsError> {
    crate::sys::move_mount_to(tree, target).map_err(|e| RootfsError::Sys {
        what: format!("attaching {what} on {}", target.display()),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })
}

pub(crate) fn sys(what: impl FnOnce() -> String) -> impl FnOnce(Errno) -> RootfsError {
    move |errno| RootfsError::Sys {
        what: what(),
        errno,
    }
}

/// How the directory that becomes `/` is obtained.
#[derive(Debug, Clone)]
pub enum Source {
    /// `root` is a plain directory, bind-mounted onto itself.
    Bind,
    /// Kernel overlayfs mounted on `root` with these mount options (lowerdir/upperdir/workdir).
    /// `idmapped_lowers`: where the parent's idmapped lower-layer mounts are attached first (user
    /// namespace), in the order they arrive.
    Overlay {
        options: String,
        idmapped_lowers: Vec<PathBuf>,
    },
    /// Already mounted on `root` (strata-overlayfs) by the time [`Plan::enter`] runs.
    Premounted,
}

impl Plan {
    /// The options of a kernel overlay that a process outside the container may mount for it, detached
    /// (no idmapped layers to attach first): the child then gets it as its one tree in [`Plan::enter`].
    pub fn overlay_options(&self) -> Option<&str> {
        match &self.source {
            Source::Overlay {
                options,
                idmapped_lowers,
            } if idmapped_lowers.is_empty() => Some(options),
            _ => None,
        }
    }
}

/// Everything the child does to its mount namespace, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    pub root: PathBuf,
    pub mounts: Vec<MountEntry>,
    /// The spec's `cgroup` mount (/sys/fs/cgroup), expanded; made after `mounts`.
    pub cgroupfs: Option<CgroupFs>,
    /// Create device nodes with mknod (root in the host user namespace) or bind them from the host
    /// (inside a user namespace, where mknod is not allowed).
    pub mknod_devices: bool,
    pub masked: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub readonly_root: bool,
    /// `linux.sysctl`, written under the container's /proc/sys after pivot_root (before /proc/sys is
    /// made read-only); bundle checks already limited them to namespaced keys.
    pub sysctl: Vec<(String, String)>,
    /// `linux.devices`, created after the spec's mounts (so in the /dev tmpfs).
    pub devices: Vec<dev::ExtraDevice>,
    /// `linux.rootfsPropagation`: the propagation flags of `/` once the container is in it.
    pub root_propagation: Option<MsFlags>,
}

/// The mount flags of a `rootfsPropagation` value (mount(8)'s names, as runc accepts them).
fn propagation_flags(value: &str) -> Result<MsFlags, RootfsError> {
    let (rec, base) = match value.strip_prefix('r') {
        Some(b) if !b.is_empty() => (MsFlags::MS_REC, b),
        _ => (MsFlags::empty(), value),
    };
    let flag = match base {
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "private" => MsFlags::MS_PRIVATE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => {
            return Err(RootfsError::Spec(format!(
                "linux.rootfsPropagation {value:?}: expected shared, slave, private or unbindable \
                 (optionally with an r prefix)"
            )));
        }
    };
    Ok(rec | flag)
}

/// A step of [`Plan::enter`] that may need something of the caller first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// A sysfs mount, which shows the mounting process's network namespace.
    Sysfs,
    /// The /sys/fs/cgroup mount, which shows the mounting process's cgroup namespace.
    Cgroupfs,
}

impl Plan {
    /// Builds the plan from the spec. `own_netns` tells whether sysfs can be mounted fresh (sysfs needs a
    /// network namespace owned by the container's user namespace); otherwise the host's /sys is bound.
    /// `cgroup_binds`: when the `cgroup` mount must bind the container's own cgroup dirs (in a user
    /// namespace, or without a cgroup namespace of its own, where a fresh mount would show the host's
    /// whole hierarchy); None mounts the hierarchies from inside the container's cgroup namespace.
    pub fn from_spec(
        spec: &Spec,
        source: Source,
        userns: bool,
        own_netns: bool,
        cgroup_binds: Option<CgroupBinds<'_>>,
    ) -> Result<Plan, RootfsError> {
        let root = spec.root().as_ref().ok_or(RootfsError::NoRoot)?;
        let mut entries = Vec::new();
        let mut cgroupfs = None;
        for m in spec.mounts().as_deref().unwrap_or_default() {
            let mut e = MountEntry::from_oci(m);
            if e.fstype.as_deref() == Some("sysfs") && userns && !own_netns {
                e = e.as_rbind_of("/sys");
            }
            if e.fstype.as_deref() == Some("cgroup") {
                cgroupfs = Some(CgroupFs::plan(&e, &host_hierarchies(), cgroup_binds));
                continue;
            }
            entries.push(e);
        }
        let linux = spec.linux().as_ref();
        let paths = |v: Option<&Vec<String>>| {
            v.into_iter()
                .flatten()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        };
        Ok(Plan {
            source,
            root: root.path().clone(),
            mounts: entries,
            cgroupfs,
            mknod_devices: !userns,
            masked: paths(linux.and_then(|l| l.masked_paths().as_ref())),
            readonly_paths: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
            readonly_root: root.readonly().unwrap_or(false),
            sysctl: linux
                .and_then(|l| l.sysctl().clone())
                .map(|m| {
                    let mut v: Vec<_> = m.into_iter().collect();
                    v.sort();
                    v
                })
                .unwrap_or_default(),
            devices: linux
                .and_then(|l| l.devices().as_ref())
                .into_iter()
                .flatten()
                .map(dev::ExtraDevice::from_oci)
                .collect::<Result<_, _>>()?,
            root_propagation: linux
                .and_then(|l| l.rootfs_propagation().as_deref())
                .filter(|v| !v.is_empty())
                .map(propagation_flags)
                .transpose()?,
        })
    }

    /// The late cgroup join (`before_cgroupfs`), then the cgroup mounts, relative to the working directory.
    fn mount_cgroupfs(
        &self,
        before: &mut dyn FnMut(Before) -> Result<Option<OwnedFd>, RootfsError>,
    ) -> Result<(), RootfsError> {
        let prepared = before(Before::Cgroupfs)?;
        match (&self.cgroupfs, prepared) {
            (Some(c), Some(tree)) => c.mount_prepared(tree),
            (Some(c), None) => c.mount_relative(),
            (None, _) => Ok(()),
        }
    }

    /// Runs in the child, in its new mount namespace: makes propagation private, mounts the rootfs and the
    /// spec's mounts under it, pivots into it and detaches the old root, then masks paths.
    ///
    /// `trees` are detached idmapped mounts made by the parent (user namespace): the rootfs itself for a
    /// bind rootfs (attached instead of bind-mounting the directory), or the overlay's lower layers.
    ///
    /// `before` runs just before a sysfs mount ([`Before::Sysfs`]: the container's network namespace
    /// must be entered by then) and just before the /sys/fs/cgroup mount ([`Before::Cgroupfs`]: a late
    /// cgroup join, whose cgroup namespace must exist by then), which comes after pivot_root and the
    /// masks when it can; it may return the cgroup mounts strata prepared ([`CgroupFs::prepared_tree`]).
    pub fn enter(
        &self,
        trees: Vec<OwnedFd>,
        before: &mut dyn FnMut(Before) -> Result<Option<OwnedFd>, RootfsError>,
    ) -> Result<(), RootfsError> {
        use std::os::fd::AsFd;
        // Private by default (nothing the container mounts reaches the host, nothing of the host's
        // reaches it). A spec asking for slave or shared propagation of its root gets a slave copy, so
        // host mounts still arrive; shared is then set on the new root after pivot_root.
        let receives = self
            .root_propagation
            .is_some_and(|f| f.intersects(MsFlags::MS_SLAVE | MsFlags::MS_SHARED));
        let initial = if receives {
            MsFlags::MS_SLAVE
        } else {
            MsFlags::MS_PRIVATE
        };
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | initial,
            None::<&str>,
        )
        .map_err(sys(|| "making / private".into()))?;
        match &self.source {
            Source::Bind if !trees.is_empty() => {
                let tree = trees.first().ok_or(RootfsError::NoRoot)?;
                attach(tree.as_fd(), &self.root, "the idmapped rootfs")?
            }
            Source::Bind => mount(
                Some(&self.root),
                &self.root,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(|| {
                format!("bind-mounting rootfs {}", self.root.display())
            }))?,
            // Mounted by strata's set-up helper (process::SetupHelper), detached.
            Source::Overlay {
                idmapped_lowers, ..
            } if idmapped_lowers.is_empty() && trees.len() == 1 => {
                let tree = trees.first().ok_or(RootfsError::NoRoot)?;
                attach(tree.as_fd(), &self.root, "the overlay")?
            }
            Source::Overlay {
                options,
                idmapped_lowers,
            } => {
                for (tree, mp) in trees.iter().zip(idmapped_lowers) {
                    attach(tree.as_fd(), mp, "the idmapped layer")?;
                }
                mount(
                    Some("overlay"),
                    &self.root,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(options.as_str()),
                )
                .map_err(sys(|| {
                    format!("mounting overlay on {}", self.root.display())
                }))?
            }
            Source::Premounted => {}
        }
        chdir(&self.root).map_err(sys(|| format!("entering rootfs {}", self.root.display())))?;

        for m in &self.mounts {
            if m.fstype.as_deref() == Some("sysfs") {
                before(Before::Sysfs)?;
            }
            m.mount_relative()?;
            if m.is_dev_tmpfs() {
                dev::populate(self.mknod_devices)?;
            }
        }
        // The cgroup mounts need the container's cgroup, which a late join (process::CgroupEntry::Late)
        // waits for the parent to make, so they come as late as they can: after pivot_root and the
        // masks, while the parent makes the cgroup. Not when they bind host cgroup dirs (gone after
        // pivot_root) or a masked or read-only path lies beneath them (they would cover the mask).
        let cgroupfs_last = self.cgroupfs.as_ref().is_none_or(|c| {
            c.fresh()
                && !self
                    .masked
                    .iter()
                    .chain(&self.readonly_paths)
                    .any(|p| c.covers(p))
        });
        if !cgroupfs_last {
            self.mount_cgroupfs(before)?;
        }
        for d in &self.devices {
            d.create(self.mknod_devices)?;
        }

        pivot_root(".", ".").map_err(sys(|| "pivot_root".into()))?;
        // The old root, now stacked on /, is detached by a task of its own while the mounts below go on
        // (sys::SyscallTask: its RCU grace period is otherwise spent idle here). Nothing below looks it
        // up: paths start at the root and the working directory, both the new root's own mount. Not
        // with a root propagation to set, which would reach the old root's mounts too.
        let detach = match self.root_propagation {
            None => crate::sys::detach_cwd_mount_concurrently().and_then(Result::ok),
            Some(_) => None,
        };
        if detach.is_none() {
            umount2(".", MntFlags::MNT_DETACH).map_err(sys(|| "detaching the old root".into()))?;
        }
        chdir("/").map_err(sys(|| "chdir /".into()))?;
        if let Some(flags) = self.root_propagation {
            // After pivot_root, which refuses a shared new root (and the old root is gone, so a shared
            // / propagates only to mounts that later copy this namespace, as under runc).
            mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
                .map_err(sys(|| "setting linux.rootfsPropagation".into()))?;
        }

        for (key, value) in &self.sysctl {
            let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, value).map_err(|e| RootfsError::Sys {
                what: format!("setting sysctl {key}={value}"),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        }
        for p in &self.masked {
            mask(p)?;
        }
        for p in &self.readonly_paths {
            make_readonly(p)?;
        }
        if cgroupfs_last {
            // Relative to / now; the targets are relative to the rootfs.
            self.mount_cgroupfs(before)?;
        }
        if let Some(d) = detach {
            d.wait().map_err(|e| RootfsError::Sys {
                what: "detaching the old root".into(),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        }
        if self.readonly_root {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(sys(|| "remounting / read-only".into()))?;
        }
        Ok(())
    }
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory; absent paths are fine.
fn mask(path: &Path) -> Result<(), RootfsError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let r = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0,mode=755"),
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    r.map_err(sys(|| format!("masking {}", path.display())))
}

/// Bind-mounts `path` onto itself read-only; absent paths are fine.
fn make_readonly(path: &Path) -> Result<(), RootfsError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let what = || format!("making {} read-only", path.display());
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(what))?;
    // The flags a user namespace locks on the underlying mount (nosuid, nodev, noexec) must be repeated.
    let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
        None::<&str>,
    )
    .map_err(sys(what))
}
