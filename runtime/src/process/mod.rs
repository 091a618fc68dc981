//! Process creation: one clone3 with all namespace flags, parent <-> child sync over a socketpair, the
//! child's setup path, exec, waiting and signal forwarding.
//!
//! Init choice: the container's command is exec'd directly as pid 1 of its pid namespace (as Docker, runc
//! and crun do by default). The kernel then only delivers signals pid 1 has handlers for, so strata's
//! forwarded SIGTERM/SIGINT/SIGHUP reach programs that handle them, and `strata kill` defaults to SIGKILL,
//! which always works. With `--init`, strata's built-in init ([`init`]) stays pid 1 instead: it runs the
//! command as pid 2, forwards every signal to it, reaps zombies and exits with the command's status.

mod child;
mod console;
pub mod init;
mod setup_helper;
pub mod sync;
pub mod tty;
mod wait;

use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::namespaces::{Kind, NamespacePlan};
use crate::{rootfs, security};

pub use setup_helper::SetupHelper;
pub use wait::{ExitStatus, SignalForwarder};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("clone3: {0}")]
    Clone(std::io::Error),
    #[error("creating the sync socket: {0}")]
    Socket(Errno),
    #[error("talking to the container process: {0}")]
    Sync(Errno),
    #[error("opening namespace {path}: {err}")]
    OpenNamespace { path: PathBuf, err: std::io::Error },
    #[error("{message}")]
    Child { code: u8, message: String },
    #[error(transparent)]
    NetNs(crate::network::NetworkError),
    #[error("the container process exited during setup")]
    ChildVanished,
    #[error("opening /dev/fuse for the rootfs: {0}")]
    DevFuse(strata_overlayfs::MountError),
    #[error("the spec has no process")]
    NoProcess,
    #[error("argument or environment contains a NUL byte")]
    Nul,
    #[error("user namespace: {0}")]
    IdMap(String),
    #[error("waiting for the container: {0}")]
    Wait(Errno),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Security(#[from] security::SecurityError),
}

/// How to find and run the command, prepared in the parent.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// Paths to try in order: the command itself when it contains a '/', else each $PATH directory + it.
    pub candidates: Vec<CString>,
    pub cwd: PathBuf,
    pub arg0: String,
}

impl ExecPlan {
    /// The same plan with `var` ("K=V") added to the environment.
    pub fn with_env(&self, var: &str) -> Result<ExecPlan, ProcessError> {
        let mut plan = self.clone();
        plan.env
            .push(CString::new(var).map_err(|_| ProcessError::Nul)?);
        Ok(plan)
    }

    pub fn new(args: &[String], env: &[String], cwd: PathBuf) -> Result<ExecPlan, ProcessError> {
        let cstr = |s: &str| CString::new(s).map_err(|_| ProcessError::Nul);
        let arg0 = args.first().cloned().unwrap_or_default();
        let candidates = if arg0.contains('/') {
            vec![cstr(&arg0)?]
        } else {
            let path = crate::spec::env_get(env, "PATH")
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cstr(&format!("{}/{arg0}", d.trim_end_matches('/'))))
                .collect::<Result<_, _>>()?
        };
        Ok(ExecPlan {
            argv: args.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
            env: env.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?,
            candidates,
            cwd,
            arg0,
        })
    }

    pub fn from_spec(spec: &Spec) -> Result<ExecPlan, ProcessError> {
        let p = spec.process().as_ref().ok_or(ProcessError::NoProcess)?;
        ExecPlan::new(
            p.args().as_deref().unwrap_or_default(),
            p.env().as_deref().unwrap_or_default(),
            p.cwd().clone(),
        )
    }
}

/// Everything the child needs, computed before clone so the child's path does no parsing.
pub struct ChildPlan {
    pub namespaces: NamespacePlan,
    /// Opened `--join` namespaces, in setns order.
    pub join_fds: Vec<(Kind, OwnedFd)>,
    /// None for `exec` (joining an existing container's mount namespace).
    pub rootfs: Option<rootfs::Plan>,
    pub hostname: Option<String>,
    pub security: security::Plan,
    pub exec: ExecPlan,
    /// Set loopback up in a new network namespace.
    pub loopback: bool,
    /// The new network namespace is made by strata, not by clone3: by its [`SetupHelper`] when `strata
    /// run` started one, else right after clone3 while the child mounts its rootfs
    /// ([`Spawned::send_net`]); the child enters it (loopback up) before its /sys mount. Making a
    /// network namespace is most of clone3's cost here (~0.45 ms of ~0.65: the kernel registers each
    /// protocol's sysctls and devices), on the start's critical path. Only where it means the same
    /// namespace (see [`ChildPlan::net_can_come_from_parent`]) and nothing needs it before the child
    /// runs (no bridge veth, no OCI hook).
    pub net_from_parent: bool,
    /// Create the cgroup namespace after being moved into the cgroup (cgroup v1), not in clone3.
    pub unshare_cgroupns: bool,
    /// Run strata's tiny init as pid 1 with the command as its child.
    pub init: bool,
    /// Mount the FUSE rootfs in the child (after the rootfs plan's private propagation) on the /dev/fuse
    /// fd [`spawn`] opens for it and hand the fd to the parent.
    pub fuse_mount: Option<FuseMount>,
    /// OCI `create`: the container outlives strata and waits before its command (see [`OciGate`]).
    pub oci: Option<OciGate>,
    /// The process outlives strata (`exec --detach`, OCI `create`): no parent-death signal.
    pub detached: bool,
    /// `process.terminal`: a connection to the caller's `--console-socket`. The child opens a pty in the
    /// container's own devpts once it is in the container's root (so `tty` and `/proc/self/fd/0` name
    /// `/dev/pts/N` there, as under runc), sends the master over it and makes the slave its stdio and
    /// controlling terminal.
    pub console: Option<std::os::unix::net::UnixStream>,
    /// The pty's size (rows, columns), set before the command runs (`process.consoleSize`; for `run -t`
    /// and a relayed `exec -t`, the caller's): a size strata's relay set only after the exec raced the
    /// command's first look at it.
    pub console_size: Option<(u16, u16)>,
}

/// [`ChildPlan::child_opens_dev_fuse`] for a plan still being made.
pub fn child_opens_dev_fuse(fuse: bool, namespaces: &NamespacePlan) -> bool {
    fuse && (namespaces.creates(Kind::User)
        || namespaces.join.iter().any(|(k, _)| *k == Kind::User))
}

/// What an OCI `create` child needs beyond `strata run`'s: it must not die with strata (the shim, not
/// strata, is its parent afterwards), it waits on `listener` (a listening unix socket in the state dir,
/// inherited through clone3) until `strata start` connects and sends the state JSON, runs the
/// startContainer hooks, and reports a failure of the last steps over that connection (EOF = exec'd).
pub struct OciGate {
    pub listener: OwnedFd,
    pub start_hooks: Vec<oci_spec::runtime::Hook>,
}

/// Mounts the FUSE rootfs on the given /dev/fuse fd and returns the connection fd.
pub type FuseMount = Box<dyn Fn(OwnedFd) -> Result<OwnedFd, String>>;

impl ChildPlan {
    /// A FUSE mount must be made in the user namespace of whoever opened its /dev/fuse fd. A child in a
    /// new (or joined) user namespace therefore opens /dev/fuse itself — before it joins its cgroup,
    /// whose device rules deny it; on cgroup v2 such a child cannot be cloned into its cgroup.
    pub fn child_opens_dev_fuse(&self) -> bool {
        child_opens_dev_fuse(self.fuse_mount.is_some(), &self.namespaces)
    }

    /// Whether a network namespace strata makes ([`ChildPlan::net_from_parent`]) is the one this plan
    /// asks clone3 for: a new one, owned by the initial user namespace (none is made or joined).
    pub fn net_can_come_from_parent(&self) -> bool {
        self.namespaces.creates(Kind::Net)
            && !self.namespaces.creates(Kind::User)
            && !self.namespaces.join.iter().any(|(k, _)| *k == Kind::User)
    }

    pub fn open_joins(join: &[(Kind, PathBuf)]) -> Result<Vec<(Kind, OwnedFd)>, ProcessError> {
        join.iter()
            .map(|(k, p)| {
                std::fs::File::open(p)
                    .map(|f| (*k, OwnedFd::from(f)))
                    .map_err(|err| ProcessError::OpenNamespace {
                        path: p.clone(),
                        err,
                    })
            })
            .collect()
    }
}

/// The parent's handle on a freshly cloned child that is waiting for [`Spawned::release`].
pub struct Spawned {
    pub pid: Pid,
    chan: sync::Channel,
    /// Where a [`CgroupEntry::Late`] child was placed (None: not pinned).
    placement: Option<OtherCpu>,
}

/// How the child gets into its cgroup.
#[derive(Clone, Copy)]
pub enum CgroupEntry<'a> {
    /// It stays in strata's (or the caller moves it).
    Inherit,
    /// cgroup v2: clone3 starts it there (CLONE_INTO_CGROUP).
    Into(BorrowedFd<'a>),
    /// cgroup v1: it writes "0" to each of these `tasks` files itself, first thing after release
    /// (see `ContainerCgroup::self_join_fds` for why not the parent).
    SelfJoin(&'a [OwnedFd]),
    /// cgroup v1, the cgroup made while the child already sets up its rootfs: the parent sends the
    /// `tasks` fds after Go ([`Spawned::send_cgroup`]) and the child joins (and makes its cgroup
    /// namespace) just before its /sys/fs/cgroup mount, so the two costs overlap on two CPUs. Until then
    /// the child's setup is charged to strata's own cgroup; it joins before anything of the container
    /// runs. Not with a new user namespace (its cgroup namespace must be made with host privileges).
    Late,
}

/// Clones the container process with every namespace of the plan at once (into its cgroup on v2, joining
/// it itself on v1) and leaves it waiting for [`Spawned::release`]. Must be called while strata is
/// single-threaded.
pub fn spawn(plan: &ChildPlan, cgroup: CgroupEntry<'_>) -> Result<Spawned, ProcessError> {
    let (parent_end, child_end) = sync::pair().map_err(ProcessError::Socket)?;
    let parent_raw = parent_end.raw();
    let mut new = plan.namespaces.new;
    if plan.net_from_parent {
        new.remove(nix::sched::CloneFlags::CLONE_NEWNET);
    }
    let flags = new.bits() as u64;
    let (into, tasks) = match cgroup {
        CgroupEntry::Inherit | CgroupEntry::Late => (None, &[][..]),
        CgroupEntry::Into(fd) => (Some(fd), &[][..]),
        CgroupEntry::SelfJoin(fds) => (None, fds),
    };
    // /dev/fuse is root's, mode 0600, and outside the devices a container may open: strata opens it
    // for the child, with its host credentials and in its own cgroup (a v2 child starts inside the
    // container's, whose device program denies it) — unless the child mounts in another user namespace,
    // whose opener the kernel requires (see ChildPlan::child_opens_dev_fuse).
    let dev_fuse = match &plan.fuse_mount {
        Some(_) if !plan.child_opens_dev_fuse() => {
            Some(strata_overlayfs::open_dev_fuse().map_err(ProcessError::DevFuse)?)
        }
        _ => None,
    };
    let late = matches!(cgroup, CgroupEntry::Late);
    let placement = if late { OtherCpu::pick() } else { None };
    let restore = placement.as_ref().map(|p| &p.allowed);
    let pid = crate::sys::clone3_run(flags, into, || {
        // The child must not keep the parent's end open, or it would never see end-of-file.
        let _ = nix::unistd::close(parent_raw);
        child::main(plan, tasks, late, restore, dev_fuse.as_ref(), &child_end)
    })
    .map_err(ProcessError::Clone)?;
    drop(dev_fuse);
    if let Some(p) = &placement {
        // A hint only: where it fails the child starts where the kernel put it.
        let _ = nix::sched::sched_setaffinity(pid, &p.other);
    }
    drop(child_end);
    Ok(Spawned {
        pid,
        chan: parent_end,
        placement,
    })
}

/// Where a [`CgroupEntry::Late`] child runs its set-up: on another CPU than strata's. A new task is
/// queued on its parent's CPU, and each message that woke it later pulled it back to the sender's CPU
/// (this machine's kernel packs tasks onto few vCPUs): the parent, busy making the cgroup or serving
/// the FUSE rootfs, kept it waiting for most of a millisecond while the other CPU idled (`perf sched
/// timehist`), which undid the overlap the late cgroup is for. The child stays pinned to the other CPU
/// until it joins its cgroup; just before, it takes back strata's CPU mask, and the join then sets the
/// container's (its cpuset), as without the pin.
#[derive(Clone, Copy)]
struct OtherCpu {
    allowed: nix::sched::CpuSet,
    other: nix::sched::CpuSet,
    /// The CPU strata was on when it cloned the child.
    here: nix::sched::CpuSet,
}

impl OtherCpu {
    /// None with a single allowed CPU (or when the mask cannot be read).
    fn pick() -> Option<OtherCpu> {
        let allowed = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()?;
        let here = nix::sched::sched_getcpu().ok()?;
        let cpu = (0..nix::sched::CpuSet::count())
            .map(|i| (i + here + 1) % nix::sched::CpuSet::count())
            .find(|&c| c != here && allowed.is_set(c).unwrap_or(false))?;
        let mut other = nix::sched::CpuSet::new();
        other.set(cpu).ok()?;
        let mut this = nix::sched::CpuSet::new();
        this.set(here).ok()?;
        Some(OtherCpu {
            allowed,
            other,
            here: this,
        })
    }
}

/// Moves a process strata just made, which the kernel queued on strata's own CPU, to another one, where
/// it works beside strata instead of after it. A hint only: where it fails (or there is one CPU) the
/// process runs where the kernel put it.
pub fn run_beside(pid: Pid) {
    if let Some(p) = OtherCpu::pick() {
        let _ = nix::sched::sched_setaffinity(pid, &p.other);
    }
}

/// strata's own CPU mask while it is pinned for [`Spawned::serve_fuse`]; restored when dropped.
pub struct ParentPin {
    cpus: Option<OtherCpu>,
}

impl ParentPin {
    fn new(p: Option<&OtherCpu>) -> ParentPin {
        ParentPin { cpus: p.copied() }
    }

    /// Pins this thread to `which` of the placement's masks; a hint only, like the child's pin.
    fn set(&self, which: fn(&OtherCpu) -> &nix::sched::CpuSet) {
        if let Some(p) = &self.cpus {
            let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), which(p));
        }
    }
}

impl Drop for ParentPin {
    fn drop(&mut self) {
        self.set(|p| &p.allowed);
    }
}

impl Spawned {
    /// strata's CPU mask when the child was pinned to another CPU (None: nothing was pinned).
    pub fn cpus(&self) -> Option<nix::sched::CpuSet> {
        self.placement.as_ref().map(|p| p.allowed)
    }

    /// Writes the child's uid and gid maps (it waits in its new user namespace until released).
    pub fn write_id_maps(&self, uid_map: &str, gid_map: &str) -> Result<(), ProcessError> {
        let w = |file: &str, map: &str| {
            std::fs::write(format!("/proc/{}/{file}", self.pid), map)
                .map_err(|e| ProcessError::IdMap(format!("writing {file} \"{}\": {e}", map.trim())))
        };
        w("uid_map", uid_map)?;
        w("gid_map", gid_map)
    }

    /// Hands the child a detached mount to use as its rootfs (before [`Spawned::release`]).
    pub fn give_root_tree(&self, tree: OwnedFd) -> Result<(), ProcessError> {
        self.chan
            .send(&sync::Msg::RootTree(tree))
            .map_err(ProcessError::Sync)
    }

    /// The error the child reported before it ended, if it did: for when strata failed to talk to it
    /// (its report says why). Call once the child is gone (killed and reaped): this does not wait.
    pub fn reported_error(&self) -> Option<ProcessError> {
        while let Ok(Some(msg)) = self.chan.recv_queued() {
            if let sync::Msg::Error { code, message } = msg {
                return Some(ProcessError::Child { code, message });
            }
        }
        None
    }

    /// Lets the child start its setup (the first half of [`Spawned::release`], for [`CgroupEntry::Late`]).
    pub fn go(&self) -> Result<(), ProcessError> {
        self.chan.send(&sync::Msg::Go).map_err(ProcessError::Sync)
    }

    /// Sends the child its /sys/fs/cgroup, prepared detached ([`CgroupEntry::Late`]), before
    /// [`Spawned::send_cgroup`].
    pub fn send_cgroupfs_tree(&self, tree: OwnedFd) -> Result<(), ProcessError> {
        self.chan
            .send(&sync::Msg::CgroupfsTree(tree))
            .map_err(ProcessError::Sync)
    }

    /// Sends the v1 `tasks` fds of the child's cgroup ([`CgroupEntry::Late`]), after [`Spawned::go`].
    pub fn send_cgroup(&self, tasks: Vec<OwnedFd>) -> Result<(), ProcessError> {
        self.chan
            .send(&sync::Msg::Cgroup(tasks))
            .map_err(ProcessError::Sync)
    }

    /// Sends the child its network namespace, loopback up ([`ChildPlan::net_from_parent`]), after
    /// [`Spawned::go`]: the one `helper` made, or else one made now.
    pub fn send_net(&self, helper: Option<&mut SetupHelper>) -> Result<(), ProcessError> {
        let made = match helper {
            Some(h) => h.take_netns()?,
            None => crate::network::new_netns_with_loopback().map_err(ProcessError::NetNs)?,
        };
        self.chan
            .send(&sync::Msg::NetNs(made))
            .map_err(ProcessError::Sync)
    }

    /// Tells a [`CgroupEntry::Late`] child that its cgroup's limits are written and its loopback is up
    /// (it waits for this before its command), after [`Spawned::send_cgroup`].
    pub fn send_ready(&self) -> Result<(), ProcessError> {
        self.chan
            .send(&sync::Msg::CgroupReady)
            .map_err(ProcessError::Sync)
    }

    /// After Go, for a FUSE rootfs: waits for the /dev/fuse fd the child mounted, has `serve` serve it
    /// and lets the child go on. Done before anything else the parent has to do after Go, so the
    /// child's rootfs set-up (whose every step waits for the server) overlaps that work.
    ///
    /// With the child on another CPU ([`CgroupEntry::Late`]) the server's threads start on the child's
    /// CPU (they inherit the mask of the thread that spawns them), and this thread stays on its own
    /// until the returned pin is dropped. The child's rootfs set-up is a ping-pong of requests with
    /// the server, while this thread goes on to make the cgroup: left to the scheduler, the new server
    /// threads were queued behind this thread's cgroup work (this machine's kernel packs tasks onto
    /// few CPUs) and every request of the child waited for it. The caller spreads the server's threads
    /// over [`Spawned::cpus`] once the child has exec'd.
    pub fn serve_fuse(
        &self,
        serve: impl FnOnce(OwnedFd) -> Result<(), String>,
    ) -> Result<ParentPin, ProcessError> {
        match self.chan.recv().map_err(ProcessError::Sync)? {
            Some(sync::Msg::FuseFd(fd)) => {
                let pin = ParentPin::new(self.placement.as_ref());
                pin.set(|p| &p.other);
                let served = serve(fd);
                pin.set(|p| &p.here);
                served.map_err(|message| ProcessError::Child { code: 125, message })?;
                self.chan.send(&sync::Msg::Go).map_err(ProcessError::Sync)?;
                Ok(pin)
            }
            Some(sync::Msg::Error { code, message }) => Err(ProcessError::Child { code, message }),
            // End of file (the child died or exec'd) or a message out of order.
            None => Err(ProcessError::Sync(Errno::EPIPE)),
            Some(_) => Err(ProcessError::Sync(Errno::EBADMSG)),
        }
    }

    /// Lets the child run its setup. Returns once the command is exec'd (the sync socket reached
    /// end-of-file) or with the child's error, with when the child reported its rootfs ready
    /// (CLOCK_MONOTONIC ns; 0 when it has no rootfs step). A FUSE rootfs is served before, with
    /// [`Spawned::go`] and [`Spawned::serve_fuse`], then this is [`Spawned::wait_exec`].
    pub fn release(self) -> Result<u64, ProcessError> {
        self.go()?;
        self.wait_exec()
    }

    /// The second half of [`Spawned::release`]: waits until the child exec'd.
    pub fn wait_exec(self) -> Result<u64, ProcessError> {
        let mut rootfs_done = 0;
        loop {
            match self.chan.recv().map_err(ProcessError::Sync)? {
                None => return Ok(rootfs_done),
                Some(sync::Msg::RootfsDone(t)) => rootfs_done = t,
                Some(sync::Msg::Waiting) => return Ok(rootfs_done),
                Some(sync::Msg::Error { code, message }) => {
                    return Err(ProcessError::Child { code, message });
                }
                // A FUSE fd is taken by serve_fuse only; here it is out of order like the rest.
                Some(
                    sync::Msg::FuseFd(_)
                    | sync::Msg::Go
                    | sync::Msg::RootTree(_)
                    | sync::Msg::NetNs(_)
                    | sync::Msg::Cgroup(_)
                    | sync::Msg::CgroupReady
                    | sync::Msg::CgroupfsTree(_),
                ) => {
                    return Err(ProcessError::Sync(Errno::EBADMSG));
                }
            }
        }
    }
}

/// The exit status strata reports for a child error code (125 strata/setup, 126 cannot execute, 127 not
/// found), as Docker does.
pub fn is_exec_error(code: u8) -> bool {
    code == 126 || code == 127
}
