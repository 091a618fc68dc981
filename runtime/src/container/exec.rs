//! `strata exec`: run another process in a running container. strata joins the container's namespaces
//! itself with one setns on a pidfd (all at once, so the order problem disappears; user namespace included
//! only when it differs from ours), then clones the process so the pid namespace applies to it, and gives it
//! the container's process settings from its config.json.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::ContainerError;
use crate::namespaces::{Kind, NamespacePlan};
use crate::process::{self, ChildPlan, ExecPlan, ProcessError, SignalForwarder};
use crate::security;
use crate::spec;
use crate::state::{StateRoot, Status};

#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub id: String,
    pub user: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub command: Vec<String>,
    /// OCI `exec --process FILE`: the whole process (args, env, cwd, user, capabilities …) instead of
    /// the container's with `command`.
    pub process: Option<oci_spec::runtime::Process>,
    /// Allocate a pty (also when `process.terminal`); its master goes to `console_socket`.
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs (it outlives strata); with `pid_file`, its host pid is written there.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
}

fn ns_inode(pid: &str, kind: Kind) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{}", kind.proc_name()))
        .ok()
        .map(|m| m.ino())
}

pub fn exec(root: &StateRoot, cfg: &ExecConfig) -> Result<i32, ContainerError> {
    let st = root.load(&cfg.id)?;
    if st.live_status() != Status::Running {
        return Err(ContainerError::NotRunning(cfg.id.clone()));
    }
    let config = root.dir(&cfg.id).join("config.json");
    let mut spec = Spec::load(&config)
        .map_err(|e| ContainerError::Usage(format!("reading {}: {e}", config.display())))?;
    let command = match &cfg.process {
        Some(p) => {
            if let Some(a) = spec.annotations_mut() {
                a.remove(spec::ANNOTATION_USER);
            }
            spec.set_process(Some(p.clone()));
            p.args().clone().unwrap_or_default()
        }
        None => cfg.command.clone(),
    };
    if command.is_empty() {
        return Err(ContainerError::Usage("strata exec needs a command".into()));
    }
    let terminal = cfg.tty
        || cfg
            .process
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
    let pid_file = cfg
        .pid_file
        .as_deref()
        .map(super::oci::PidFile::open)
        .transpose()?;
    // Without --console-socket strata relays the terminal itself (`strata exec -it ID sh`), as `run -t`.
    let mut relay_end = None;
    let console = match (terminal, &cfg.console_socket) {
        (false, _) => None,
        (true, Some(sock)) => Some(super::oci::connect_console(sock)?),
        (true, None) if !cfg.detach => {
            let (ours, child) =
                std::os::unix::net::UnixStream::pair().map_err(|err| ContainerError::Io {
                    what: "creating the terminal socket".into(),
                    err,
                })?;
            relay_end = Some(ours);
            Some(child)
        }
        (true, None) => {
            return Err(ContainerError::Usage(
                "a detached process with a terminal (--tty or process.terminal) needs --console-socket"
                    .into(),
            ));
        }
    };
    let process = spec.process_mut().as_mut().ok_or(ProcessError::NoProcess)?;
    let mut env = process.env().clone().unwrap_or_default();
    if relay_end.is_some() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    spec::merge_env(&mut env, &cfg.env)?;
    process.set_env(Some(env.clone()));
    let cwd = match &cfg.workdir {
        Some(w) if !w.starts_with('/') => {
            return Err(spec::SpecError::RelativeWorkdir(w.clone()).into());
        }
        Some(w) => PathBuf::from(w),
        None => process.cwd().clone(),
    };
    if let Some(u) = &cfg.user {
        let (name, group) = spec::split_user(u)?;
        let mut user = process.user().clone();
        let annotations = spec.annotations_mut().get_or_insert_with(Default::default);
        annotations.remove(spec::ANNOTATION_USER);
        match (name.parse::<u32>(), group.as_deref().map(str::parse::<u32>)) {
            (Ok(uid), None) => {
                user.set_uid(uid);
                user.set_gid(uid);
            }
            (Ok(uid), Some(Ok(gid))) => {
                user.set_uid(uid);
                user.set_gid(gid);
            }
            _ => {
                annotations.insert(spec::ANNOTATION_USER.to_string(), u.clone());
            }
        }
        if let Some(p) = spec.process_mut().as_mut() {
            p.set_user(user);
        }
    }

    let plan = ChildPlan {
        namespaces: NamespacePlan::default(),
        join_fds: Vec::new(),
        rootfs: None,
        hostname: None,
        security: security::Plan::from_spec(&spec)?,
        exec: ExecPlan::new(&command, &env, cwd)?,
        loopback: false,
        net_from_parent: false,
        unshare_cgroupns: false,
        init: false,
        fuse_mount: None,
        oci: None,
        detached: cfg.detach,
        console_size: super::prepare::console_size(&spec).or_else(|| {
            relay_end
                .as_ref()
                .and_then(|_| crate::process::tty::caller_size())
        }),
        console,
    };

    // Open (v1) or join (v2) the cgroup before the mount namespace hides the host's /sys/fs/cgroup. On v1
    // the process cloned below joins it itself through the `tasks` fds (no RCU grace period, and strata
    // stays out of the container's cgroup); on v2 strata joins and the clone inherits it.
    let mut tasks = Vec::new();
    if let Some((parent, name)) = &st.cgroup {
        let cg = crate::cgroups::ContainerCgroup::open(parent, name)?;
        tasks = cg.self_join_fds()?;
        if tasks.is_empty() {
            cg.add_task(std::process::id() as i32)?;
        }
    }

    let pid = st.pid.to_string();
    let mut flags = CloneFlags::empty();
    for kind in Kind::ALL {
        let theirs = ns_inode(&pid, kind);
        if theirs.is_some() && theirs != ns_inode("self", kind) {
            flags |= kind.flag();
        }
    }
    let pidfd = crate::sys::pidfd_open(Pid::from_raw(st.pid)).map_err(|e| ContainerError::Io {
        what: format!("opening container {} process", cfg.id),
        err: e,
    })?;
    let mut forwarder = SignalForwarder::install().map_err(ProcessError::Wait)?;
    if !flags.is_empty() {
        setns(&pidfd, flags).map_err(|e| ContainerError::Io {
            what: format!("joining the namespaces of container {}", cfg.id),
            err: e.into(),
        })?;
    }
    let entry = if tasks.is_empty() {
        process::CgroupEntry::Inherit
    } else {
        process::CgroupEntry::SelfJoin(&tasks)
    };
    let spawned = process::spawn(&plan, entry)?;
    let pid = spawned.pid;
    if let Err(e) = spawned.release() {
        let _ = forwarder.wait(pid);
        return Err(e.into());
    }
    if let Some(f) = &pid_file {
        f.write(pid.as_raw())?;
    }
    if cfg.detach {
        return Ok(0);
    }
    let mut relay = match &relay_end {
        Some(sock) => match process::tty::Relay::receive(sock) {
            Ok(r) => Some(r),
            Err(err) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = forwarder.wait(pid);
                return Err(ContainerError::Io {
                    what: "relaying the terminal".into(),
                    err,
                });
            }
        },
        None => None,
    };
    let status = forwarder
        .wait_relaying(pid, relay.as_mut())
        .map_err(ProcessError::Wait)?;
    // The caller's terminal is restored before anything else is printed.
    drop(relay);
    Ok(status.code())
}
