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
    let oci_resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let mut resources = oci_resources.map(Resources::from_oci).unwrap_or_default();
    resources.devices = crate::cgroups::devices::from_oci(
        oci_resources
            .and_then(|r| r.devices().as_deref())
            .unwrap_or_default(),
    )?;
    let listener = bind_unix(&dir.join(START_SOCKET))
        .map_err(io(format!("creating {}", dir.join(START_SOCKET).display())))?;
    let console = match &opts.console_socket {
        Some(sock) if spec.process().as_ref().and_then(|p| p.terminal()) == Some(true) => {
            Some(connect_console(sock)?)
        }
        _ => None,
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    let cgroup_rel = format!("{cg_parent}/{cg_name}");
    let mut plan = child_plan(&spec, rootfs::Source::Bind, &root, None, false, &cgroup_rel)?;
    let userns = plan.namespaces.creates(Kind::User);
    plan.detached = true;
    plan.console = console;
    plan.oci = Some(OciGate {
        listener: OwnedFd::from(listener),
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
        tty: None,
    };

    let cgroup = held_cgroup.insert(ContainerCgroup::create(cg_parent, cg_name, &resources)?);
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
        // The deprecated prestart hooks (Docker's libnetwork still uses them) run where runc runs them:
        // in the runtime namespace after the namespaces exist, just before createRuntime.
        #[allow(deprecated)]
        let prestart = hooks.prestart().as_deref().unwrap_or_default();
        hooks::run_all("prestart", prestart, creating.as_bytes())?;
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
    if let Err(e) = spawned.release() {
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
        if let Err(e) = PidFile::open(f).and_then(|f| f.write(pid.as_raw())) {
            abort_child(pid);
            return Err(e);
        }
    }
    Ok(pid.as_raw())
}

/// A `--pid-file`, opened by its directory first: `exec` writes it after joining the container's mount
/// namespace, where the host path is no longer visible.
pub struct PidFile {
    dir: std::fs::File,
    name: PathBuf,
    shown: PathBuf,
}

impl PidFile {
    pub fn open(path: &Path) -> Result<PidFile, ContainerError> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| ContainerError::Usage(format!("bad pid file {}", path.display())))?;
        let dir = std::fs::File::open(parent).map_err(io(format!(
            "opening the directory of pid file {}",
            path.display()
        )))?;
        Ok(PidFile {
            dir,
            name,
            shown: path.to_path_buf(),
        })
    }

    /// Writes `pid` atomically (temp file + rename), as a shim may read it while strata runs.
    pub fn write(&self, pid: i32) -> Result<(), ContainerError> {
        use nix::fcntl::{OFlag, openat, renameat};
        use nix::sys::stat::Mode;
        let tmp = self.name.with_extension("strata-tmp");
        let err = |e: nix::errno::Errno| ContainerError::Io {
            what: format!("writing pid file {}", self.shown.display()),
            err: e.into(),
        };
        let fd = openat(
            &self.dir,
            &tmp,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(err)?;
        std::fs::File::from(fd)
            .write_all(pid.to_string().as_bytes())
            .map_err(io(format!("writing pid file {}", self.shown.display())))?;
        renameat(&self.dir, &tmp, &self.dir, &self.name).map_err(err)
    }
}

/// Connects to the caller's `--console-socket`; the container's child sends the master of a pty it
/// opens in the container's devpts over this connection (see `process::console`).
pub fn connect_console(sock: &Path) -> Result<std::os::unix::net::UnixStream, ContainerError> {
    connect_unix(sock).map_err(io(format!(
        "connecting to console socket {}",
        sock.display()
    )))
}

/// A unix socket path the kernel accepts: `sun_path` holds 107 bytes, and Docker's state dirs
/// (`/var/run/docker/runtime-runc/moby/<64-hex id>/`) are longer than that. A longer path is reached through
/// its directory opened as `O_PATH` (`/proc/self/fd/N/NAME`); the returned file must outlive the call.
pub fn short_socket_path(path: &Path) -> std::io::Result<(Option<std::fs::File>, PathBuf)> {
    const SUN_PATH_MAX: usize = 107;
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((None, path.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok((None, path.to_path_buf()));
    };
    // nix, not std's custom_flags: std masks those with O_ACCMODE, which on musl includes O_PATH.
    use nix::fcntl::OFlag;
    let dir = nix::fcntl::open(
        if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        },
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map(std::fs::File::from)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    Ok((Some(dir), short))
}

/// `UnixListener::bind` for paths of any length (see [`short_socket_path`]).
pub fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let (_dir, short) = short_socket_path(path)?;
    std::os::unix::net::UnixListener::bind(short)
}

/// `UnixStream::connect` for paths of any length (see [`short_socket_path`]).
pub fn connect_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    let (_dir, short) = short_socket_path(path)?;
    std::os::unix::net::UnixStream::connect(short)
}
