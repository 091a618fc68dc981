//! Orchestration of a container's life: claim the name, prepare the rootfs, clone, release, wait, tear
//! down (GUIDE §5). `run` is `strata run`; [`manage`] holds ps/kill/rm/gc and [`exec`] joins a container.

pub mod exec;
pub mod manage;
pub mod oci;
pub mod oci_ops;
pub mod phases;
mod prepare;

use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::namespaces::Kind;
use crate::process::{self, ProcessError, SignalForwarder};
use crate::rootfs;
use crate::security;
use crate::spec::{self, ImageDefaults, ProcessOptions};
use crate::state::{self, State, StateError, StateRoot, Status};
use phases::Phases;
use prepare::{Prepared, child_plan, prepare};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("{0}")]
    Fuse(String),
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
    #[error(transparent)]
    Bundle(#[from] crate::oci::bundle::BundleError),
    #[error(transparent)]
    Hook(#[from] crate::oci::hooks::HookError),
    #[error("cannot {op} container {id}: it is {status}")]
    WrongStatus {
        op: &'static str,
        id: String,
        status: &'static str,
    },
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
    /// Root of the image store (`--store` / `STRATA_STORE`).
    pub image_root: PathBuf,
    pub fs: Option<FsMode>,
    pub detach: bool,
    pub auto_remove: bool,
    pub init: bool,
    pub process: ProcessOptions,
    pub image_defaults: ImageDefaults,
    pub resources: crate::cgroups::Resources,
    /// Parent cgroup (default `strata`); containers are created and removed only under it.
    pub cgroup_parent: String,
    pub net: NetMode,
    /// Bandwidth limit in bytes/s for `--net bridge`, both directions.
    pub net_rate: Option<u64>,
    /// Let clone3 make the network namespace even where strata can make it after the clone (see
    /// `ChildPlan::net_from_parent`): the bench's comparison of the two.
    pub netns_in_clone: bool,
}

/// `--net`: `none` and `loopback` both give a new network namespace with only loopback, up; `bridge`
/// adds a veth pair with an address on each end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    None,
    Loopback,
    Bridge,
}

/// `strata run`: returns the exit status strata should exit with (the container's, or 0 when detached).
/// `helper` is a [`process::SetupHelper`] the caller started as early as it could, in case the
/// container's network namespace is strata's to make (`ChildPlan::net_from_parent`): it is used then
/// (it also mounts a kernel overlay), dropped (its task reaped) otherwise. Without one strata makes the
/// namespace itself after the clone and the container process mounts its overlay.
pub fn run(cfg: RunConfig, helper: Option<process::SetupHelper>) -> Result<i32, ContainerError> {
    let id = cfg.name.clone().unwrap_or_else(state::new_id);
    let dir = cfg.state_root.claim(&id)?;
    if cfg.detach {
        // The monitor is a fork: the helper's task is not its child.
        drop(helper);
        return detach(cfg, id, dir);
    }
    let r = run_claimed(&cfg, &id, dir, helper, &mut |_| {});
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
    helper: Option<process::SetupHelper>,
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
    // Only where the plan has strata make the namespace (a dropped helper reaps its task and closes
    // what it made).
    let mut helper = helper.filter(|_| p.plan.net_from_parent);
    // The helper mounts the overlay while strata clones; a helper that cannot be asked leaves it to the
    // container process, as without a helper.
    if let (Some(h), Some(options)) = (
        helper.as_mut(),
        p.plan.rootfs.as_ref().and_then(|r| r.overlay_options()),
    ) {
        let _ = h.ask_overlay(options);
    }

    let mut held = Held::default();
    let r = start_and_wait(cfg, &p, helper, &mut ph, &mut held, started);
    ph.start("teardown");
    // The OOM killer sends SIGKILL: only then is the (several-file) OOM counter worth reading.
    let killed = matches!(&r, Ok((137, _)));
    let oom = killed && held.cgroup.as_ref().is_some_and(|c| c.oom_killed());
    // With its own pid namespace every container process died with pid 1 (the kernel kills the namespace
    // before pid 1 can be reaped), so the cgroup is already empty.
    held.release(!p.plan.namespaces.isolates(Kind::Pid));
    let (code, mut st) = match r {
        Ok(x) => x,
        Err(e) => {
            ph.write_if_requested();
            return Err(e);
        }
    };
    // An OOM kill is reported as such and exits 137, as Docker does.
    let code = if oom {
        eprintln!("strata: container {} was killed: out of memory", p.id);
        137
    } else {
        code
    };
    if cfg.auto_remove {
        cfg.state_root.remove(&p.id)?;
    } else {
        st.status = Status::Exited;
        st.exit_code = Some(code);
        st.oom_killed = oom;
        cfg.state_root.save(&st)?;
    }
    held.finish();
    ph.write_if_requested();
    Ok(code)
}

/// What a container holds outside its namespaces while it runs; released in every outcome.
#[derive(Default)]
struct Held {
    cgroup: Option<crate::cgroups::ContainerCgroup>,
    bridge: Option<crate::network::Bridge>,
    server: Option<strata_overlayfs::Server>,
    /// The container's mount namespace (see [`hold_mount_ns`]).
    mnt_ns: Option<std::os::fd::OwnedFd>,
    /// The task releasing it, once [`Held::release`] started it.
    unmounting: Option<crate::sys::SyscallTask>,
}

impl Held {
    /// Releases the container's mount namespace, kills what is left in the cgroup (`kill_first`) and
    /// removes it, deletes the veth. The namespace's mounts go on being released by a task of their own
    /// ([`Held::finish`] waits for it and then stops the FUSE server). Errors are reported, not fatal:
    /// the container's status is what strata exits with.
    fn release(&mut self, kill_first: bool) {
        // Its mounts go while the cgroup is removed (and, without a FUSE server, the state dir).
        self.unmounting = self.mnt_ns.take().and_then(crate::sys::close_concurrently);
        if let Some(t) = &self.unmounting {
            process::run_beside(t.pid());
        }
        if let Some(cg) = self.cgroup.take() {
            let emptied = if kill_first { cg.kill_all() } else { Ok(()) };
            if let Err(e) = emptied.and_then(|()| cg.remove()) {
                eprintln!("strata: removing the container's cgroup: {e}");
            }
        }
        if let Some(b) = self.bridge.take() {
            if let Err(e) = b.teardown() {
                eprintln!("strata: removing the container's network: {e}");
            }
        }
        if self.server.is_some() {
            // The mounts are gone before the FUSE server stops and the upper layer is deleted.
            self.finish();
        }
    }

    /// Waits until the container's mounts are released, then stops the FUSE server.
    fn finish(&mut self) {
        if let Some(Err(e)) = self.unmounting.take().map(crate::sys::SyscallTask::wait) {
            eprintln!("strata: releasing the container's mount namespace: {e}");
        }
        if let Some(s) = self.server.take() {
            // strata exits right after: its threads need not be waited for.
            if let Err(e) = s.stop_detached() {
                eprintln!("strata: stopping the FUSE rootfs server: {e}");
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Creates the cgroup, clones, sets up the network, releases the child and waits for it. Everything
/// acquired is recorded in `held` so the caller releases it whatever happens.
fn start_and_wait(
    cfg: &RunConfig,
    p: &Prepared,
    mut setup_helper: Option<process::SetupHelper>,
    ph: &mut Phases,
    held: &mut Held,
    started: &mut dyn FnMut(Result<(), (i32, String)>),
) -> Result<(i32, State), ContainerError> {
    let fail = |e: ContainerError, started: &mut dyn FnMut(Result<(), (i32, String)>)| {
        started(Err((e.exit_code(), e.to_string())));
        e
    };
    // cgroup v1 without a new user namespace: the cgroup is made while the child already sets up its
    // rootfs (see process::CgroupEntry::Late); otherwise first, as clone3 or the child's first step
    // needs it.
    let late = crate::cgroups::detect() != crate::cgroups::CgroupMode::V2
        && !p.plan.namespaces.creates(Kind::User);
    let mut forwarder = SignalForwarder::install().map_err(ProcessError::Wait)?;
    let spawned = if late {
        ph.start("namespaces");
        process::spawn(&p.plan, process::CgroupEntry::Late).map_err(|e| fail(e.into(), started))?
    } else {
        ph.start("cgroup");
        let cgroup = match crate::cgroups::ContainerCgroup::create(
            &cfg.cgroup_parent,
            &p.id,
            &cfg.resources,
        ) {
            Ok(c) => held.cgroup.insert(c),
            Err(e) => return Err(fail(e.into(), started)),
        };
        ph.start("namespaces");
        spawn_in_cgroup(p, cgroup).map_err(|e| fail(e, started))?
    };
    let pid = spawned.pid;
    let spawn_cpus = spawned.cpus();
    if cfg.net == NetMode::Bridge {
        match crate::network::Bridge::setup(&p.id, pid.as_raw(), cfg.net_rate) {
            Ok(b) => held.bridge = Some(b),
            Err(e) => {
                abort_child(pid);
                return Err(fail(e.into(), started));
            }
        }
    }

    // The overlay the helper mounted, before Go: the child attaches it first thing. When the helper
    // could not mount it, the child mounts it itself (and names the error if it fails too).
    if let Some(tree) = setup_helper.as_mut().and_then(|h| h.take_overlay().ok()) {
        if let Err(e) = spawned.give_root_tree(tree) {
            return Err(fail(give_up(&spawned, e.into()), started));
        }
    }
    if let Err(e) = spawned.go() {
        return Err(fail(give_up(&spawned, e.into()), started));
    }
    // With a FUSE rootfs this thread stays on its CPU until the cgroup is made (see serve_fuse).
    let pinned = if let Some(config) = &p.fuse {
        // The child's rootfs set-up waits on the server at every step, so the server comes first; the
        // overlay is prepared while the child mounts /dev/fuse.
        ph.start("serve");
        let server = &mut held.server;
        let prepared = strata_overlayfs::PreparedOverlay::new(config);
        let r = spawned.serve_fuse(|fd| {
            let s = prepared
                .and_then(|o| o.serve_fd(fd))
                .map_err(|e| format!("serving the FUSE rootfs: {e}"))?;
            *server = Some(s);
            Ok(())
        });
        match r {
            Ok(pin) => Some(pin),
            Err(e) => return Err(fail(give_up(&spawned, e.into()), started)),
        }
    } else {
        None
    };
    if p.plan.net_from_parent {
        // While the child mounts its rootfs; before the cgroup, as the child needs it first (at /sys).
        ph.start("network");
        // The helper's task, if any, is reaped as it hands it over.
        if let Err(e) = spawned.send_net(setup_helper.as_mut()) {
            return Err(fail(give_up(&spawned, e.into()), started));
        }
    }
    if late {
        // While the child sets up its rootfs (with a FUSE rootfs, served from threads next to it).
        ph.start("cgroup");
        if let Err(e) = make_late_cgroup(cfg, p, held, &spawned) {
            return Err(fail(give_up(&spawned, e), started));
        }
    }
    drop(pinned);
    held.mnt_ns = hold_mount_ns(p, pid);
    // After Go: the child was waiting for it, and the state needs two /proc reads.
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
        cgroup: Some((cfg.cgroup_parent.clone(), p.id.clone())),
        bridge: held.bridge.is_some(),
        auto_remove: cfg.auto_remove,
        namespaces: Kind::ALL
            .iter()
            .filter(|k| {
                p.plan.namespaces.isolates(**k) || (**k == Kind::Cgroup && p.plan.unshare_cgroupns)
            })
            .map(|k| k.to_string())
            .collect(),
        bundle: None,
    };
    ph.start("rootfs");
    // The child mounts the rootfs, /proc, /dev …, reports the time, sets up security and execs; the
    // parent sees exec as the socket's EOF.
    let released = spawned.wait_exec();
    match released {
        Ok(rootfs_done) if rootfs_done > 0 => {
            ph.split_at(rootfs_done, "exec");
            ph.finish();
        }
        Ok(_) => ph.start("exec"),
        Err(e) => {
            // The child reported the failure and exited (or is killed now); reap it so nothing is left.
            abort_child(pid);
            return Err(fail(e.into(), started));
        }
    }

    // Lets stop() abort the connection even if something keeps the mount alive. Only now: the walk into
    // the mount waits for the server's first replies (INIT, the root's attributes), which cost the child
    // up to milliseconds when done before its Go; and after the child's pivot_root its root is the mount.
    if let Some(s) = held.server.as_mut() {
        s.attach_mountpoint(&PathBuf::from(format!("/proc/{pid}/root")));
        // Started next to the child for its set-up; the container's own requests may use every CPU.
        if let Some(cpus) = spawn_cpus {
            s.set_cpus(cpus);
        }
    }

    // `-t`: the master came over the socket before the exec; relay it while the container runs.
    let mut relay = match &p.tty {
        Some(sock) => match process::tty::Relay::receive(sock) {
            Ok(r) => Some(r),
            Err(e) => {
                abort_child(pid);
                return Err(fail(io("relaying the container's terminal")(e), started));
            }
        },
        None => None,
    };

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
        return Err(fail(e.into(), started));
    }
    started(Ok(()));

    ph.start("run");
    let status = forwarder
        .wait_relaying(pid, relay.as_mut())
        .map_err(ProcessError::Wait)?;
    // The caller's terminal is restored before anything else is printed.
    drop(relay);
    st.status = Status::Exited;
    Ok((status.code(), st))
}

/// The container's new mount namespace, held by strata from after Go (when strata waits for the child
/// anyway) until the teardown. When the last process in a namespace exits, the kernel unmounts all of
/// it (~25 mounts, superblocks killed, an RCU grace period waited for) on that process's exit path,
/// which strata's wait and so the container's exit status waited for; held, the namespace is released
/// by a task of its own while strata removes the cgroup ([`Held::release`]). None without a new mount
/// namespace or when it cannot be opened (the container's exit then unmounts it, as it would).
fn hold_mount_ns(p: &Prepared, pid: nix::unistd::Pid) -> Option<std::os::fd::OwnedFd> {
    if !p.plan.namespaces.creates(Kind::Mnt) {
        return None;
    }
    std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(Into::into)
}

/// Makes the cgroup of a [`process::CgroupEntry::Late`] child and sends it its `tasks` fds; then writes
/// the limits, brings up the child's loopback and tells it so. The child, its rootfs set up by then,
/// waits for the fds, joins and mounts its cgroupfs while the limits and the loopback are done off its
/// path; it waits for the word before its command runs, so the command never runs unlimited.
fn make_late_cgroup(
    cfg: &RunConfig,
    p: &Prepared,
    held: &mut Held,
    spawned: &process::Spawned,
) -> Result<(), ContainerError> {
    let (cg, pending) = crate::cgroups::ContainerCgroup::create_limits_pending(
        &cfg.cgroup_parent,
        &p.id,
        &cfg.resources,
    )?;
    let cg = held.cgroup.insert(cg);
    // The child's /sys/fs/cgroup comes ready, the tmpfs and every hierarchy (first, so it is there
    // when the child joins): a dozen mounts off the child's lane. With them here, this lane is now the
    // longer one by a little (the child finishes its rootfs first). Where it cannot be made, the child
    // mounts it itself.
    let cgroupfs = p.plan.rootfs.as_ref().and_then(|r| r.cgroupfs.as_ref());
    if let Some(Ok(tree)) = cgroupfs.and_then(|c| c.prepared_tree(cg.rel_path())) {
        spawned.send_cgroupfs_tree(tree)?;
    }
    spawned.send_cgroup(cg.self_join_fds()?)?;
    cg.apply_pending(pending)?;
    // A namespace strata made has its loopback up already.
    if p.plan.loopback && !p.plan.net_from_parent {
        crate::network::loopback_up_in(spawned.pid.as_raw())?;
    }
    spawned.send_ready()?;
    Ok(())
}

/// Clones the container process of `p` into `cgroup` (CLONE_INTO_CGROUP on v2, self-join on v1) and,
/// for a new user namespace, writes its id maps and hands it its idmapped rootfs. The child is left
/// waiting for [`process::Spawned::release`]; on failure it is killed and reaped.
fn spawn_in_cgroup(
    p: &Prepared,
    cgroup: &crate::cgroups::ContainerCgroup,
) -> Result<process::Spawned, ContainerError> {
    // A child that opens /dev/fuse itself must do so before it is in its cgroup (see
    // ChildPlan::child_opens_dev_fuse): on v2 it then joins through cgroup.procs, not clone3.
    let cgroup_fd = cgroup
        .v2_dir_fd()
        .filter(|_| !p.plan.child_opens_dev_fuse());
    let tasks = match cgroup_fd {
        Some(_) => Vec::new(),
        None => cgroup.self_join_fds()?,
    };
    let entry = match (&cgroup_fd, tasks.is_empty()) {
        (Some(fd), _) => process::CgroupEntry::Into(fd.as_fd()),
        (None, false) => process::CgroupEntry::SelfJoin(&tasks),
        (None, true) => process::CgroupEntry::Inherit,
    };
    let spawned = process::spawn(&p.plan, entry)?;
    let setup = || -> Result<(), ContainerError> {
        if matches!(entry, process::CgroupEntry::Inherit) {
            cgroup.add_task(spawned.pid.as_raw())?;
        }
        if p.plan.namespaces.creates(Kind::User) {
            setup_userns(p, &spawned)?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        abort_child(spawned.pid);
        return Err(e);
    }
    Ok(spawned)
}

/// Writes the child's id maps from the spec and gives it idmapped copies of the rootfs (bind) or of each
/// lower layer (kernel overlay), so files owned by host root appear owned by the container's root.
fn setup_userns(p: &Prepared, spawned: &process::Spawned) -> Result<(), ContainerError> {
    let linux = p.spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let uid_map = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid_map = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    spawned.write_id_maps(&uid_map, &gid_map)?;
    if p.idmap_sources.is_empty() {
        return Ok(());
    }
    let userns = std::fs::File::open(format!("/proc/{}/ns/user", spawned.pid))
        .map_err(io("opening the container's user namespace"))?;
    for src in &p.idmap_sources {
        let tree = crate::sys::open_tree_clone(src)
            .map_err(io(format!("cloning the mount of {}", src.display())))?;
        crate::sys::idmap_mount(tree.as_fd(), userns.as_fd()).map_err(io(format!(
            "idmapping {} (needs a filesystem with idmapped-mount support)",
            src.display()
        )))?;
        spawned.give_root_tree(tree)?;
    }
    Ok(())
}

/// Kills and reaps a child (one that failed or was never released).
fn abort_child(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// Kills and reaps a released child strata failed to talk to or set up for, and returns the error to
/// report: the child's own when it reported one (it failed first, and strata's error, a broken pipe
/// say, only followed from it), else `e`.
fn give_up(spawned: &process::Spawned, e: ContainerError) -> ContainerError {
    abort_child(spawned.pid);
    spawned.reported_error().map_or(e, ContainerError::from)
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
        let r = run_claimed(&cfg, &id, dir.clone(), None, &mut started);
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
