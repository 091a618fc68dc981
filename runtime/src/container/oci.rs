//! `strata create` (OCI): everything of `strata run` up to the exec — the same prepare/clone/rootfs/cgroup
//! path — then the container process waits at its start gate and strata exits, leaving the caller (a
//! shim, Docker, conmon, a test) as the parent. `start`, `state`, `kill`, `delete`, `pause`/`resume` and
//! `ps` are in [`super::oci_ops`].

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{ContainerError, FsMode, Prepared, abort_child, child_plan, io, spawn_in_cgroup};
use crate::cgroups::{ContainerCgroup, Resources};
use crate::namespaces::Kind;
use crate::oci::{bundle, hooks};
use crate::process::OciGate;
use crate::rootfs;
use crate::state::{self, State, StateRoot, Status};

/// The start gate's socket in the container's state directory.
pub const START_SOCKET: &str = "start.sock";

/// What `strata create` was asked.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub state_root: StateRoot,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Default parent cgroup when the spec has no `linux.cgroupsPath`.
    pub cgroup_parent: String,
}

/// Creates the container and returns the host pid of its init (waiting before its command). On failure
/// nothing is left: no state directory, cgroup or process.
pub fn create(opts: &CreateOptions) -> Result<i32, ContainerError> {
    if !state::valid_name(&opts.id) {
        return Err(state::StateError::BadName(opts.id.clone()).into());
    }
    let b = bundle::load(&opts.bundle)?;
    let (cg_parent, cg_name) = bundle::cgroup_location(&b.spec, &opts.id, &opts.cgroup_parent)?;
    let terminal = b
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(ContainerError::Usage(
            "process.terminal is true: strata create needs --console-socket".into(),
        ));
    }
    let dir = opts.state_root.claim(&opts.id)?;
    let mut cgroup = None;
    let r = create_claimed(opts, &b, dir, (&cg_parent, &cg_name), &mut cgroup);
    if r.is_err() {
        if let Some(cg) = cgroup.take() {
            let _ = cg.kill_all().and_then(|()| cg.remove());
        }
        let _ = opts.state_root.remove(&opts.id);
    }
    r
}

fn create_claimed(
    opts: &CreateOptions,
    b: &bundle::Bundle,
    dir: PathBuf,
    (cg_parent, cg_name): (&str, &str),
    held_cgroup: &mut Option<ContainerCgroup>,
) -> Result<i32, ContainerError> {
    let mut spec = b.spec.clone();
    // strata's own default seccomp filter is for `strata run`; an OCI spec without linux.seccomp means
    // none (and one with it is refused by bundle::load until profiles are translated).
    spec.annotations_mut()
        .get_or_insert_with(Default::default)
        .insert(
            crate::spec::ANNOTATION_SECCOMP.to_string(),
            "unconfined".to_string(),
        );
    let root = b.rootfs.clone();
    if let Some(r) = spec.root_mut().as_mut() {
        r.set_path(root.clone());
    }
    let resources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .map(Resources::from_oci)
        .unwrap_or_default();
    let listener = std::os::unix::net::UnixListener::bind(dir.join(START_SOCKET))
        .map_err(io(format!("creating {}", dir.join(START_SOCKET).display())))?;
    let console = match &opts.console_socket {
        Some(sock) if spec.process().as_ref().and_then(|p| p.terminal()) == Some(true) => {
            Some(send_console(sock)?)
        }
        _ => None,
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    let mut plan = child_plan(&spec, rootfs::Source::Bind, &root, None, false)?;
    if let Some(r) = plan.rootfs.as_mut() {
        r.mounts = r
            .mounts
            .drain(..)
            .flat_map(|m| expand_cgroup_mount(m, &format!("{cg_parent}/{cg_name}")))
            .collect();
    }
    let userns = plan.namespaces.creates(Kind::User);
    plan.oci = Some(OciGate {
        listener: OwnedFd::from(listener),
        console,
        start_hooks: hooks.start_container().clone().unwrap_or_default(),
    });
    if plan.rootfs.is_none() {
        return Err(ContainerError::Usage(
            "linux.namespaces: strata needs a mount namespace".into(),
        ));
    }
    let p = Prepared {
        id: opts.id.clone(),
        dir: dir.clone(),
        fs: FsMode::Bind,
        root: root.clone(),
        spec,
        plan,
        fuse: None,
        idmap_sources: if userns { vec![root.clone()] } else { vec![] },
    };

    let cgroup = held_cgroup.insert(ContainerCgroup::create(cg_parent, cg_name, &resources)?);
    cgroup.apply_device_rules(&bundle::device_rules(&p.spec))?;
    let spawned = spawn_in_cgroup(&p, cgroup)?;
    let pid = spawned.pid;
    let annotations = p.spec.annotations().clone().unwrap_or_default();
    let st = State {
        id: p.id.clone(),
        status: Status::Created,
        pid: pid.as_raw(),
        pid_start: state::process_start_time(pid.as_raw()).unwrap_or(0),
        monitor_pid: 0,
        monitor_start: 0,
        created_unix: state::now_unix(),
        image: None,
        fs: FsMode::Bind.name().to_string(),
        rootfs: root,
        command: p
            .spec
            .process()
            .as_ref()
            .and_then(|pr| pr.args().clone())
            .unwrap_or_default(),
        exit_code: None,
        oom_killed: false,
        cgroup: Some((cg_parent.to_string(), cg_name.to_string())),
        bridge: false,
        auto_remove: false,
        namespaces: Kind::ALL
            .iter()
            .filter(|k| p.plan.namespaces.isolates(**k))
            .map(|k| k.to_string())
            .collect(),
        bundle: Some(b.dir.clone()),
    };
    let before_release = || -> Result<(), ContainerError> {
        if let Some(adj) = p.spec.process().as_ref().and_then(|pr| pr.oom_score_adj()) {
            std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
                .map_err(io("setting process.oomScoreAdj"))?;
        }
        let creating =
            crate::oci::state_json(&p.id, "creating", pid.as_raw(), &b.dir, &annotations)
                .to_string();
        hooks::run_all(
            "createRuntime",
            hooks.create_runtime().as_deref().unwrap_or_default(),
            creating.as_bytes(),
        )?;
        // createContainer runs in the runtime's namespaces here (runc runs it inside the container's
        // mount namespace before pivot_root); its path resolves in the runtime namespace either way.
        hooks::run_all(
            "createContainer",
            hooks.create_container().as_deref().unwrap_or_default(),
            creating.as_bytes(),
        )?;
        Ok(())
    };
    if let Err(e) = before_release() {
        abort_child(pid);
        return Err(e);
    }
    if let Err(e) = spawned.release(|_| Err("unexpected FUSE fd".into())) {
        abort_child(pid);
        return Err(e.into());
    }
    let saved = opts.state_root.save(&st).and_then(|()| {
        p.spec
            .save(dir.join("config.json"))
            .map_err(|e| state::StateError::Io {
                id: p.id.clone(),
                err: std::io::Error::other(e.to_string()),
            })
    });
    if let Err(e) = saved {
        abort_child(pid);
        return Err(e.into());
    }
    if let Some(f) = &opts.pid_file {
        if let Err(e) = write_pid_file(f, pid.as_raw()) {
            abort_child(pid);
            return Err(e);
        }
    }
    Ok(pid.as_raw())
}

/// A `cgroup` mount of the spec. With cgroup v1 hierarchies (this hybrid host) it becomes what runc
/// makes of it: a tmpfs with each hierarchy's container cgroup (`rel`) bound under its name, so the
/// container sees its own cgroup only; on a pure v2 host, a cgroup2 mount (rooted at the container's
/// cgroup namespace).
fn expand_cgroup_mount(m: rootfs::MountEntry, rel: &str) -> Vec<rootfs::MountEntry> {
    use nix::mount::MsFlags;
    if m.fstype.as_deref() != Some("cgroup") {
        return vec![m];
    }
    if crate::cgroups::detect() == crate::cgroups::CgroupMode::V2 {
        return vec![rootfs::MountEntry {
            fstype: Some("cgroup2".into()),
            source: Some("cgroup2".into()),
            data: None,
            ..m
        }];
    }
    let mut out = vec![rootfs::MountEntry {
        fstype: Some("tmpfs".into()),
        source: Some("tmpfs".into()),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        data: Some("mode=755".into()),
        bind_remount: false,
        target: m.target.clone(),
    }];
    let host = Path::new(crate::cgroups::CGROUP_ROOT);
    let mut hierarchies: Vec<_> = std::fs::read_dir(host)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    hierarchies.sort();
    for h in hierarchies {
        let src = host.join(&h).join(rel);
        if src.is_dir() {
            out.push(rootfs::MountEntry {
                target: m.target.join(&h),
                fstype: None,
                source: Some(src),
                flags: (m.flags | MsFlags::MS_BIND | MsFlags::MS_REC) & !MsFlags::MS_RELATIME,
                data: None,
                bind_remount: true,
            });
        }
    }
    out
}

/// Writes `pid` to `path` atomically (temp file + rename), as a shim reads it while strata runs.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_extension("strata-tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(io(format!("writing pid file {}", path.display())))
}

/// Opens a pty, sends its master to the caller's `--console-socket` (SCM_RIGHTS, as runc does) and
/// returns the slave for the container's stdio.
fn send_console(sock: &Path) -> Result<OwnedFd, ContainerError> {
    let pty = nix::pty::openpty(None, None).map_err(|e| ContainerError::Io {
        what: "opening a pty for process.terminal".into(),
        err: e.into(),
    })?;
    let stream = std::os::unix::net::UnixStream::connect(sock).map_err(io(format!(
        "connecting to console socket {}",
        sock.display()
    )))?;
    let fds = [pty.master.as_raw_fd()];
    let name = b"/dev/ptmx";
    nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(name)],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| ContainerError::Io {
        what: format!("sending the pty to console socket {}", sock.display()),
        err: e.into(),
    })?;
    Ok(pty.slave)
}
