//! From `strata run`'s configuration to a prepared container: the rootfs source and layers, the OCI spec
//! built from the flags and the image, and the child's plan (shared with the OCI `create`).

use std::path::PathBuf;

use super::{ContainerError, FsMode, NetMode, RunConfig, io};
use crate::namespaces::{Kind, NamespacePlan};
use crate::process::{self, ChildPlan, ExecPlan};
use crate::rootfs;
use crate::security;
use crate::spec::{self, ImageDefaults};

/// The prepared container, between claiming the name and cloning.
pub(super) struct Prepared {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) fs: FsMode,
    pub(super) root: PathBuf,
    pub(super) spec: oci_spec::runtime::Spec,
    pub(super) plan: ChildPlan,
    /// The strata-overlayfs configuration when `fs` is fuse; served by this process once the child has
    /// mounted /dev/fuse in its namespace.
    pub(super) fuse: Option<strata_overlayfs::Config>,
    /// Directories the parent hands to the child as idmapped mounts (user namespace): the bind rootfs,
    /// or each overlay lower layer in order.
    pub(super) idmap_sources: Vec<PathBuf>,
    /// `-t`: strata's end of the socket the child sends its pty master over.
    pub(super) tty: Option<std::os::unix::net::UnixStream>,
}

pub(super) fn prepare(cfg: &RunConfig, id: &str, dir: PathBuf) -> Result<Prepared, ContainerError> {
    if cfg.net_rate.is_some() && cfg.net != NetMode::Bridge {
        return Err(ContainerError::Usage(
            "--net-rate needs --net bridge".into(),
        ));
    }
    let mut lowers = cfg.lowers.clone();
    let mut fuse = None;
    let mut image_defaults = cfg.image_defaults.clone();
    if let Some(name) = &cfg.image {
        if cfg.rootfs.is_some() {
            return Err(ContainerError::Usage(
                "--image and --rootfs exclude each other".into(),
            ));
        }
        let store = crate::image::Store::open(&cfg.image_root)?;
        let record = store.get(name)?;
        lowers.extend(store.lower_dirs_top_first(&record));
        let c = record.config;
        image_defaults = ImageDefaults {
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            env: c.env,
            working_dir: c.working_dir,
            user: c.user,
        };
    }
    // --fs defaults to fuse for images, bind for --rootfs, kernel for --lower.
    let fs = match (cfg.fs, cfg.image.is_some(), cfg.rootfs.is_some()) {
        (Some(fs), _, _) => fs,
        (None, true, _) => FsMode::Fuse,
        (None, false, true) if cfg.lowers.is_empty() => FsMode::Bind,
        (None, _, _) => FsMode::Kernel,
    };
    if let Some(r) = &cfg.rootfs {
        if !r.is_dir() {
            return Err(ContainerError::NoRootfs(r.clone()));
        }
        if fs != FsMode::Bind {
            lowers.push(r.clone());
        }
    }
    for l in &lowers {
        if !l.is_dir() {
            return Err(ContainerError::NoRootfs(l.clone()));
        }
    }
    let mut idmap_sources = Vec::new();
    if cfg.process.userns {
        // The namespace's root (an unprivileged host id) must traverse the state dir to reach the layers.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(io(format!("chmod {}", dir.display())))?;
    }
    let (root, source) = match fs {
        FsMode::Bind => {
            let r = cfg
                .rootfs
                .clone()
                .ok_or_else(|| ContainerError::Usage("--fs bind needs --rootfs DIR".into()))?;
            let r = std::fs::canonicalize(&r).map_err(io(format!("rootfs {}", r.display())))?;
            if cfg.process.userns {
                idmap_sources.push(r.clone());
            }
            (r, rootfs::Source::Bind)
        }
        FsMode::Kernel => {
            let [upper, work, merged] = overlay_dirs(fs, &lowers, &dir)?;
            // In a user namespace each lower layer is an idmapped mount the parent makes and the child
            // attaches at lower-N (so host root's files are the container root's), and overlay keeps its
            // metadata in user.* xattrs (userxattr), the only ones a namespace's root may write.
            let mut mountpoints = Vec::new();
            if cfg.process.userns {
                for i in 0..lowers.len() {
                    let mp = dir.join(format!("lower-{i}"));
                    std::fs::create_dir(&mp).map_err(io(format!("creating {}", mp.display())))?;
                    mountpoints.push(mp);
                }
                idmap_sources = lowers.clone();
            }
            let shown = if cfg.process.userns {
                &mountpoints
            } else {
                &lowers
            };
            let lowerdir: Vec<String> = shown.iter().map(|l| l.display().to_string()).collect();
            // `volatile` for --rm: the upper layer is deleted at exit, so overlay need not sync it when the
            // rootfs is unmounted — without it the container's exit waits for a syncfs of the whole host
            // filesystem holding the upper (seconds when other work has dirty data). A kept upper stays
            // crash-safe (overlay refuses to reuse a volatile upper after a crash anyway).
            let options = format!(
                "lowerdir={},upperdir={},workdir={}{}{}",
                lowerdir.join(":"),
                upper.display(),
                work.display(),
                if cfg.process.userns { ",userxattr" } else { "" },
                if cfg.auto_remove { ",volatile" } else { "" }
            );
            (
                merged,
                rootfs::Source::Overlay {
                    options,
                    idmapped_lowers: mountpoints,
                },
            )
        }
        FsMode::Fuse => {
            let [upper, work, merged] = overlay_dirs(fs, &lowers, &dir)?;
            fuse = Some(strata_overlayfs::Config {
                lowers: lowers.clone(),
                upper: Some(upper),
                work: Some(work),
                fsname: format!("strata-{id}"),
                ..Default::default()
            });
            (merged, rootfs::Source::Premounted)
        }
    };
    let mut spec = spec::build(root.clone(), &cfg.process, &image_defaults)?;
    // `-t`: the pty starts at the caller's size (process.consoleSize, as Docker passes it to runc).
    if let (true, Some((rows, cols)), Some(p)) = (
        cfg.process.tty,
        process::tty::caller_size(),
        spec.process_mut().as_mut(),
    ) {
        p.set_console_size(Some(
            oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(rows))
                .width(u64::from(cols))
                .build()
                .map_err(|e| ContainerError::Usage(e.to_string()))?,
        ));
    }
    if cfg.process.userns && fs != FsMode::Bind {
        // The upper layer belongs to the container's root (the first id of its range).
        let host = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
            m.and_then(|v| v.first()).map(|m| m.host_id())
        };
        let linux = spec.linux().as_ref();
        let (uid, gid) = (
            host(linux.and_then(|l| l.uid_mappings().as_ref())),
            host(linux.and_then(|l| l.gid_mappings().as_ref())),
        );
        for d in [dir.join("upper"), dir.join("work")] {
            std::os::unix::fs::chown(&d, uid, gid).map_err(io(format!("chown {}", d.display())))?;
        }
        if let Some(c) = fuse.as_mut() {
            // The mount is made in the container's user namespace, so the server reports ids of that
            // namespace and the kernel maps them to host ids. Image layers hold unshifted ids (shown
            // as they are, like kernel overlay's idmapped lowers); the upper layer holds host ids, so
            // a file the container's root creates belongs to the mapped host uid on disk.
            let to_map =
                |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| strata_overlayfs::IdMap {
                    ranges: m
                        .into_iter()
                        .flatten()
                        .map(|m| strata_overlayfs::IdRange {
                            disk: m.host_id(),
                            shown: m.container_id(),
                            len: m.size(),
                        })
                        .collect(),
                };
            c.upper_uid_map = to_map(linux.and_then(|l| l.uid_mappings().as_ref()));
            c.upper_gid_map = to_map(linux.and_then(|l| l.gid_mappings().as_ref()));
        }
    }
    let cgroup_rel = format!("{}/{id}", cfg.cgroup_parent);
    let mut plan = child_plan(&spec, source, &root, fuse.as_ref(), cfg.init, &cgroup_rel)?;
    // A bridge's veth is moved into the namespace by the child's pid before the child runs.
    plan.net_from_parent =
        cfg.net != NetMode::Bridge && !cfg.netns_in_clone && plan.net_can_come_from_parent();
    // `-t`: the child sends the master of the pty it opens in its devpts over this pair (as to an OCI
    // caller's console socket); strata relays it.
    let tty = if cfg.process.tty {
        let (ours, child) =
            std::os::unix::net::UnixStream::pair().map_err(io("creating the terminal socket"))?;
        plan.console = Some(child);
        Some(ours)
    } else {
        None
    };
    if plan.rootfs.is_none() {
        return Err(ContainerError::Usage(
            "sharing the host's mount namespace is not supported by strata run".into(),
        ));
    }
    Ok(Prepared {
        id: id.to_string(),
        dir,
        fs,
        root,
        spec,
        plan,
        fuse,
        idmap_sources,
        tty,
    })
}

/// The child's plan for a container whose spec is final: namespaces, rootfs (from `source` on `root`),
/// hostname, security and command. Shared by `strata run` and the OCI `create`. `cgroup_rel` is the
/// container's cgroup path below the hierarchy roots (for /sys/fs/cgroup in a user namespace).
pub(super) fn child_plan(
    spec: &oci_spec::runtime::Spec,
    source: rootfs::Source,
    root: &std::path::Path,
    fuse: Option<&strata_overlayfs::Config>,
    init: bool,
    cgroup_rel: &str,
) -> Result<ChildPlan, ContainerError> {
    let namespaces = NamespacePlan::from_spec(
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default(),
    );
    let userns = namespaces.creates(Kind::User);
    // On cgroup v1 (and on v2 for a child that opens /dev/fuse first) the child joins its cgroup after
    // clone, so its cgroup namespace is created then.
    let mut namespaces = namespaces;
    let unshare_cgroupns = namespaces.creates(Kind::Cgroup)
        && (crate::cgroups::detect() != crate::cgroups::CgroupMode::V2
            || process::child_opens_dev_fuse(fuse.is_some(), &namespaces));
    if unshare_cgroupns {
        namespaces
            .new
            .remove(nix::sched::CloneFlags::CLONE_NEWCGROUP);
    }
    let own_cgroupns = namespaces.creates(Kind::Cgroup) || unshare_cgroupns;
    let rootfs = rootfs::Plan::from_spec(
        spec,
        source,
        userns,
        namespaces.creates(Kind::Net),
        (userns || !own_cgroupns).then_some(rootfs::CgroupBinds {
            rel: cgroup_rel,
            host_ns: !own_cgroupns,
        }),
    )?;
    Ok(ChildPlan {
        join_fds: ChildPlan::open_joins(&namespaces.join)?,
        rootfs: namespaces.isolates(Kind::Mnt).then_some(rootfs),
        hostname: namespaces
            .isolates(Kind::Uts)
            .then(|| spec.hostname().clone())
            .flatten(),
        security: security::Plan::from_spec(spec)?,
        exec: ExecPlan::from_spec(spec)?,
        loopback: namespaces.creates(Kind::Net),
        // `strata run` decides (prepare); an OCI container's hooks may look for it at create.
        net_from_parent: false,
        unshare_cgroupns,
        init,
        oci: None,
        detached: false,
        console: None,
        console_size: console_size(spec),
        fuse_mount: fuse.map(|c| {
            let opts = strata_overlayfs::FuseMountOptions::from(c);
            let target = root.to_path_buf();
            Box::new(move |dev_fuse| {
                strata_overlayfs::mount_fuse_fd(dev_fuse, &target, &opts).map_err(|e| e.to_string())
            }) as process::FuseMount
        }),
        namespaces,
    })
}

/// An overlay rootfs (kernel or FUSE) needs lower layers; makes its upper, work and merged dirs in the
/// container's state dir.
fn overlay_dirs(
    fs: FsMode,
    lowers: &[PathBuf],
    dir: &std::path::Path,
) -> Result<[PathBuf; 3], ContainerError> {
    if lowers.is_empty() {
        return Err(ContainerError::Usage(format!(
            "--fs {} needs an image, --rootfs or --lower",
            fs.name()
        )));
    }
    let dirs = ["upper", "work", "merged"].map(|d| dir.join(d));
    for d in &dirs {
        std::fs::create_dir(d).map_err(io(format!("creating {}", d.display())))?;
    }
    Ok(dirs)
}

/// The spec's `process.consoleSize` as (rows, columns), saturated to the kernel's u16.
pub(super) fn console_size(spec: &oci_spec::runtime::Spec) -> Option<(u16, u16)> {
    let clamp = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
    spec.process()
        .as_ref()
        .and_then(|p| p.console_size())
        .map(|b| (clamp(b.height()), clamp(b.width())))
}
