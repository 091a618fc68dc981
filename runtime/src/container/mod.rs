//! Orchestration of a container's life: claim the name, prepare the rootfs, clone, release, wait, tear
//! down (GUIDE §5). `run` is `strata run`; [`manage`] holds ps/kill/rm/gc and [`exec`] joins a container.

pub mod exec;
pub mod manage;
pub mod phases;

use std::path::PathBuf;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::namespaces::{Kind, NamespacePlan};
use crate::process::{self, ChildPlan, ExecPlan, ProcessError, SignalForwarder};
use crate::rootfs;
use crate::security;
use crate::spec::{self, ImageDefaults, ProcessOptions};
use crate::state::{self, State, StateError, StateRoot, Status};
use phases::Phases;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Spec(#[from] spec::SpecError),
    #[error("{0}")]
    Process(#[from] ProcessError),
    #[error("{0}")]
    Rootfs(#[from] rootfs::RootfsError),
    #[error("{0}")]
    Security(#[from] security::SecurityError),
    #[error("rootfs {0}: no such directory")]
    NoRootfs(PathBuf),
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running: stop it first or use --force")]
    Running(String),
}

impl ContainerError {
    /// Docker's convention: 126 the command cannot be executed, 127 it was not found, 125 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Process(ProcessError::Child { code, .. }) => i32::from(*code),
            _ => 125,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |err| ContainerError::Io { what, err }
}

/// How the container's `/` is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsMode {
    /// A plain directory (`--rootfs`), bind-mounted.
    Bind,
    /// Kernel overlayfs over the layers, with a private upper layer per container.
    Kernel,
    /// strata-overlayfs (FUSE) mounted inside the container's mount namespace.
    Fuse,
}

impl FsMode {
    pub fn name(self) -> &'static str {
        match self {
            FsMode::Bind => "bind",
            FsMode::Kernel => "kernel",
            FsMode::Fuse => "fuse",
        }
    }
}

/// Everything `strata run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub state_root: StateRoot,
    pub name: Option<String>,
    /// A directory used as `/` (bind), or as the single lower layer of an overlay.
    pub rootfs: Option<PathBuf>,
    /// Layer directories, top-first (the image store's lower dirs, or `--lower`).
    pub lowers: Vec<PathBuf>,
    pub image: Option<String>,
    pub fs: Option<FsMode>,
    pub detach: bool,
    pub auto_remove: bool,
    pub init: bool,
    pub process: ProcessOptions,
    pub image_defaults: ImageDefaults,
}

/// The prepared container, between claiming the name and cloning.
struct Prepared {
    id: String,
    dir: PathBuf,
    fs: FsMode,
    root: PathBuf,
    spec: oci_spec::runtime::Spec,
    plan: ChildPlan,
}

fn prepare(cfg: &RunConfig, id: &str, dir: PathBuf) -> Result<Prepared, ContainerError> {
    let fs = match (cfg.fs, cfg.rootfs.is_some()) {
        (Some(fs), _) => fs,
        (None, true) if cfg.lowers.is_empty() => FsMode::Bind,
        (None, _) => FsMode::Kernel,
    };
    let mut lowers = cfg.lowers.clone();
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
    let (root, source) = match fs {
        FsMode::Bind => {
            let r = cfg
                .rootfs
                .clone()
                .ok_or_else(|| ContainerError::Usage("--fs bind needs --rootfs DIR".into()))?;
            let r = std::fs::canonicalize(&r).map_err(io(format!("rootfs {}", r.display())))?;
            (r, rootfs::Source::Bind)
        }
        FsMode::Kernel => {
            if lowers.is_empty() {
                return Err(ContainerError::Usage(
                    "--fs kernel needs an image, --rootfs or --lower".into(),
                ));
            }
            let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
            for d in [&upper, &work, &merged] {
                std::fs::create_dir(d).map_err(io(format!("creating {}", d.display())))?;
            }
            let lowerdir: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowerdir.join(":"),
                upper.display(),
                work.display()
            );
            (merged, rootfs::Source::Overlay { options })
        }
        FsMode::Fuse => {
            return Err(ContainerError::Usage(
                "--fs fuse is not available yet in this build (strata-overlayfs not wired); use --fs kernel".into(),
            ));
        }
    };
    let spec = spec::build(root.clone(), &cfg.process, &cfg.image_defaults)?;
    let namespaces = NamespacePlan::from_spec(
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default(),
    );
    let userns = namespaces.creates(Kind::User);
    let rootfs = rootfs::Plan::from_spec(&spec, source, userns, namespaces.creates(Kind::Net))?;
    let plan = ChildPlan {
        join_fds: ChildPlan::open_joins(&namespaces.join)?,
        rootfs: namespaces.isolates(Kind::Mnt).then_some(rootfs),
        hostname: namespaces
            .isolates(Kind::Uts)
            .then(|| spec.hostname().clone())
            .flatten(),
        security: security::Plan::from_spec(&spec)?,
        exec: ExecPlan::from_spec(&spec)?,
        loopback: namespaces.creates(Kind::Net),
        init: cfg.init,
        fuse_mount: None,
        namespaces,
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
    })
}

/// `strata run`: returns the exit status strata should exit with (the container's, or 0 when detached).
pub fn run(cfg: RunConfig) -> Result<i32, ContainerError> {
    let id = cfg.name.clone().unwrap_or_else(state::new_id);
    let dir = cfg.state_root.claim(&id)?;
    if cfg.detach {
        return detach(cfg, id, dir);
    }
    let r = run_claimed(&cfg, &id, dir, &mut |_| {});
    if r.is_err() {
        let _ = cfg.state_root.remove(&id);
    }
    r
}

/// The rest of `run` once the name is claimed. `started` is told when the command is running (Ok) or
/// failed to start (Err, with the exit status and message).
fn run_claimed(
    cfg: &RunConfig,
    id: &str,
    dir: PathBuf,
    started: &mut dyn FnMut(Result<(), (i32, String)>),
) -> Result<i32, ContainerError> {
    let mut ph = Phases::default();
    ph.start("prepare");
    let p = match prepare(cfg, id, dir) {
        Ok(p) => p,
        Err(e) => {
            started(Err((e.exit_code(), e.to_string())));
            return Err(e);
        }
    };

    ph.start("cgroup");
    // Cgroup creation (cgroups::ContainerCgroup) is wired in when the resources module lands on main.

    let mut forwarder = SignalForwarder::install().map_err(ProcessError::Wait)?;
    ph.start("namespaces");
    let spawned = match process::spawn(&p.plan, None) {
        Ok(s) => s,
        Err(e) => {
            started(Err((125, e.to_string())));
            return Err(e.into());
        }
    };
    let pid = spawned.pid;
    let mut st = State {
        id: p.id.clone(),
        status: Status::Running,
        pid: pid.as_raw(),
        pid_start: state::process_start_time(pid.as_raw()).unwrap_or(0),
        monitor_pid: std::process::id() as i32,
        monitor_start: state::process_start_time(std::process::id() as i32).unwrap_or(0),
        created_unix: state::now_unix(),
        image: cfg.image.clone(),
        fs: p.fs.name().to_string(),
        rootfs: p.root.clone(),
        command: p
            .spec
            .process()
            .as_ref()
            .and_then(|pr| pr.args().clone())
            .unwrap_or_default(),
        exit_code: None,
        oom_killed: false,
        cgroup: None,
        auto_remove: cfg.auto_remove,
        namespaces: Kind::ALL
            .iter()
            .filter(|k| p.plan.namespaces.isolates(**k))
            .map(|k| k.to_string())
            .collect(),
    };
    ph.start("rootfs");
    // The child mounts the rootfs, /proc, /dev …, reports the time, sets up security and execs; the
    // parent sees exec as the socket's EOF.
    let released = spawned.release(|_fd| Err("FUSE rootfs not available".to_string()));
    match released {
        Ok(rootfs_done) if rootfs_done > 0 => {
            ph.split_at(rootfs_done, "exec");
            ph.finish();
        }
        Ok(_) => ph.start("exec"),
        Err(e) => {
            // The child reported the failure and exited; reap it so nothing is left behind.
            let _ = forwarder.wait(pid);
            started(Err((i32::from(child_code(&e)), e.to_string())));
            return Err(e.into());
        }
    }
    // The state says "running" only once the command runs (a signal sent earlier could hit a pid 1
    // without handlers); until then the claimed directory has no state.json and gc leaves it alone.
    ph.start("state");
    let saved = cfg.state_root.save(&st).and_then(|()| {
        p.spec
            .save(p.dir.join("config.json"))
            .map_err(|e| StateError::Io {
                id: p.id.clone(),
                err: std::io::Error::other(e.to_string()),
            })
    });
    if let Err(e) = saved {
        abort_child(pid);
        started(Err((125, e.to_string())));
        return Err(e.into());
    }

    started(Ok(()));

    ph.start("run");
    let status = forwarder.wait(pid).map_err(ProcessError::Wait)?;

    ph.start("teardown");
    let code = status.code();
    if cfg.auto_remove {
        cfg.state_root.remove(&p.id)?;
    } else {
        st.status = Status::Exited;
        st.exit_code = Some(code);
        cfg.state_root.save(&st)?;
    }
    ph.write_if_requested();
    Ok(code)
}

fn child_code(e: &ProcessError) -> u8 {
    match e {
        ProcessError::Child { code, .. } => *code,
        _ => 125,
    }
}

/// Kills and reaps a child that never got released.
fn abort_child(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// `--detach`: a monitor process (a fork of strata, no re-exec) runs the container and waits for it; the
/// foreground strata prints the id once the command runs (or the error) and exits.
fn detach(cfg: RunConfig, id: String, dir: PathBuf) -> Result<i32, ContainerError> {
    let (front, back) = process::sync::pair().map_err(ProcessError::Socket)?;
    let front_raw = front.raw();
    let log = dir.join("log");
    let monitor = crate::sys::fork_run(|| {
        let _ = nix::unistd::close(front_raw);
        let _ = nix::unistd::setsid();
        if let Err(e) = redirect_stdio(&log) {
            let _ = back.send(&process::sync::Msg::Error {
                code: 125,
                message: e.to_string(),
            });
            return 125;
        }
        let mut started = |r: Result<(), (i32, String)>| {
            let msg = match r {
                Ok(()) => process::sync::Msg::Go,
                Err((code, message)) => process::sync::Msg::Error {
                    code: code as u8,
                    message,
                },
            };
            let _ = back.send(&msg);
        };
        let r = run_claimed(&cfg, &id, dir.clone(), &mut started);
        if r.is_err() {
            let _ = cfg.state_root.remove(&id);
        }
        r.unwrap_or(125)
    })
    .map_err(io("forking the monitor"))?;
    drop(back);
    match front.recv() {
        Ok(Some(process::sync::Msg::Go)) => {
            println!("{id}");
            Ok(0)
        }
        Ok(Some(process::sync::Msg::Error { code, message })) => {
            let _ = waitpid(monitor, None);
            Err(ProcessError::Child { code, message }.into())
        }
        _ => {
            let _ = waitpid(monitor, None);
            let _ = StateRoot::new(cfg.state_root.path.clone()).remove(&id);
            Err(ProcessError::ChildVanished.into())
        }
    }
}

/// The monitor's stdin is /dev/null and its (and the container's) stdout/stderr go to the state dir's log.
fn redirect_stdio(log: &std::path::Path) -> Result<(), ContainerError> {
    use std::os::fd::AsFd;
    let null = std::fs::File::open("/dev/null").map_err(io("opening /dev/null"))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(format!("opening {}", log.display())))?;
    let err = |e: nix::errno::Errno| ContainerError::Io {
        what: "redirecting stdio".into(),
        err: e.into(),
    };
    nix::unistd::dup2_stdin(null.as_fd()).map_err(err)?;
    nix::unistd::dup2_stdout(out.as_fd()).map_err(err)?;
    nix::unistd::dup2_stderr(out.as_fd()).map_err(err)?;
    Ok(())
}
