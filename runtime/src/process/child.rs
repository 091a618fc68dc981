//! The container process's side, from clone3 to exec. Runs in a fork-like copy of a single-threaded strata,
//! so ordinary code is fine here; every step that can fail reports "what: why" to the parent and exits with
//! 125 (setup), 126 (cannot execute) or 127 (not found).

use std::ffi::CStr;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sched::setns;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, sethostname, setresgid, setresuid, setsid};

use super::sync::{Channel, Msg};
use super::{ChildPlan, ExecPlan};
use crate::namespaces::Kind;

pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn setup<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Failure {
    move |e| Failure {
        code: 125,
        message: format!("{what}: {e}"),
    }
}

/// Entry point of the cloned child; returns the exit status on failure (exec never returns on success).
/// `cpus`: strata's CPU mask, taken back when the child joins its late cgroup (the parent pinned it
/// until then; see `process::OtherCpu`).
pub fn main(
    plan: &ChildPlan,
    cgroup_tasks: &[OwnedFd],
    late: bool,
    cpus: Option<&nix::sched::CpuSet>,
    dev_fuse: Option<&OwnedFd>,
    chan: &Channel,
) -> i32 {
    let mut started = None;
    match run(plan, cgroup_tasks, late, cpus, dev_fuse, chan, &mut started) {
        Ok(()) => 0,
        Err(f) => {
            // Past the OCI start gate strata's create has gone; `strata start` hears the failure instead.
            match started.as_mut() {
                Some(conn) => {
                    let _ = std::io::Write::write_all(conn, f.message.as_bytes());
                }
                None => {
                    let _ = chan.send(&Msg::Error {
                        code: f.code,
                        message: f.message,
                    });
                }
            }
            i32::from(f.code)
        }
    }
}

/// What strata sends after Go while the child sets up its rootfs: the cgroup of a
/// [`super::CgroupEntry::Late`] child (its `tasks` fds, then strata's word that the limits are written
/// and the loopback is up), and the network namespace strata made ([`super::ChildPlan::net_from_parent`]).
#[derive(Default)]
struct AfterGo<'a> {
    tasks: Option<Vec<OwnedFd>>,
    joined: bool,
    /// strata's CPU mask, given back just before the join (whose cpuset then sets the container's).
    cpus: Option<&'a nix::sched::CpuSet>,
    /// strata writes the limits and brings our loopback up after sending the cgroup: we wait for
    /// [`Msg::CgroupReady`] before the command.
    ready_pending: bool,
    /// The network namespace strata makes for us, until we enter it.
    netns: Option<OwnedFd>,
    net_pending: bool,
    /// Our /sys/fs/cgroup, when strata prepared it.
    cgroupfs_tree: Option<OwnedFd>,
}

impl AfterGo<'_> {
    /// Takes a cgroup, ready or network namespace message; false for any other message.
    fn take(&mut self, msg: &mut Option<Msg>) -> bool {
        match msg.take() {
            Some(Msg::Cgroup(fds)) => self.tasks = Some(fds),
            Some(Msg::CgroupReady) => self.ready_pending = false,
            Some(Msg::NetNs(fd)) => self.netns = Some(fd),
            Some(Msg::CgroupfsTree(fd)) => self.cgroupfs_tree = Some(fd),
            other => {
                *msg = other;
                return false;
            }
        }
        true
    }

    /// Waits until strata has written the cgroup's limits and brought up our loopback (a no-op for a
    /// child that joined its cgroup at its start).
    fn wait_ready(&mut self, chan: &Channel) -> Result<(), Failure> {
        while self.ready_pending {
            let mut msg = chan
                .recv()
                .map_err(setup("waiting for the cgroup's limits"))?;
            if !self.take(&mut msg) {
                // The parent gave up (or died) before sending it: leave quietly.
                crate::sys::exit_now(125);
            }
        }
        Ok(())
    }

    /// Waits for the network namespace strata makes for us and enters it (once; a no-op when clone3
    /// made it).
    fn enter_net(&mut self, chan: &Channel) -> Result<(), Failure> {
        if !self.net_pending {
            return Ok(());
        }
        let netns = loop {
            if let Some(fd) = self.netns.take() {
                break fd;
            }
            let mut msg = chan
                .recv()
                .map_err(setup("waiting for the network namespace"))?;
            if !self.take(&mut msg) {
                // The parent gave up (or died) before sending it: leave quietly.
                crate::sys::exit_now(125);
            }
        };
        setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(setup("entering the network namespace"))?;
        self.net_pending = false;
        Ok(())
    }

    /// Waits for the rest of the cgroup, joins it and makes the cgroup namespace (once). `meanwhile`
    /// runs first when the cgroup is not there yet.
    fn join(
        &mut self,
        plan: &ChildPlan,
        chan: &Channel,
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), Failure> {
        if self.joined {
            return Ok(());
        }
        if self.tasks.is_none() {
            meanwhile();
        }
        while self.tasks.is_none() {
            let mut msg = chan.recv().map_err(setup("waiting for the cgroup"))?;
            if !self.take(&mut msg) {
                // The parent gave up (or died) before sending it: leave quietly.
                crate::sys::exit_now(125);
            }
        }
        if let Some(cpus) = self.cpus {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), cpus)
                .map_err(setup("restoring the CPU mask"))?;
        }
        join_cgroup(plan, self.tasks.as_deref().unwrap_or_default())?;
        self.joined = true;
        Ok(())
    }
}

/// Joins the v1 cgroup through its `tasks` fds and, when asked, makes the cgroup namespace there.
fn join_cgroup(plan: &ChildPlan, cgroup_tasks: &[OwnedFd]) -> Result<(), Failure> {
    for fd in cgroup_tasks {
        // A clone3 child has one thread, so joining each v1 hierarchy as a thread moves the process.
        nix::unistd::write(fd, b"0").map_err(setup("joining the container's cgroup"))?;
    }
    if plan.unshare_cgroupns {
        // On cgroup v1 we were moved into the container's cgroup just now; a cgroup namespace created
        // now is rooted there (clone3 would have rooted it at strata's own cgroup).
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(setup("creating the cgroup namespace"))?;
    }
    Ok(())
}

/// Waits for the parent's Go, keeping cgroup and network messages that arrive first.
fn recv_go(chan: &Channel, after_go: &mut AfterGo) {
    loop {
        let mut msg = chan.recv().ok().flatten();
        if after_go.take(&mut msg) {
            continue;
        }
        match msg {
            Some(Msg::Go) => return,
            _ => crate::sys::exit_now(125),
        }
    }
}

fn run(
    plan: &ChildPlan,
    cgroup_tasks: &[OwnedFd],
    late: bool,
    cpus: Option<&nix::sched::CpuSet>,
    dev_fuse: Option<&OwnedFd>,
    chan: &Channel,
    started: &mut Option<std::os::unix::net::UnixStream>,
) -> Result<(), Failure> {
    // Die with strata: a container whose monitor is gone has nobody serving its rootfs or reaping it. An
    // OCI container instead outlives `strata create` by design.
    let die_with_strata = plan.oci.is_none() && !plan.detached;
    if die_with_strata {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    }
    let mut trees = Vec::new();
    loop {
        match chan.recv() {
            Ok(Some(Msg::Go)) => break,
            Ok(Some(Msg::RootTree(fd))) => trees.push(fd),
            // The parent gave up (or died) before releasing us: leave quietly.
            _ => crate::sys::exit_now(125),
        }
    }
    setsid().map_err(setup("setsid"))?;
    let mut after_go = AfterGo {
        joined: !late,
        cpus,
        ready_pending: late,
        net_pending: plan.net_from_parent,
        ..Default::default()
    };
    for (kind, fd) in &plan.join_fds {
        setns(fd, kind.flag()).map_err(|e| Failure {
            code: 125,
            message: format!("joining {kind} namespace: {e}"),
        })?;
    }
    let dev_fuse = match dev_fuse {
        // Our copy of strata's /dev/fuse fd: take it over as an owned fd (a dup) and close the inherited
        // number, so it is gone once the mount hands it to strata, as if we had opened it.
        Some(fd) => {
            let owned = fd.try_clone().map_err(setup("dup of /dev/fuse"))?;
            let _ = nix::unistd::close(std::os::fd::AsRawFd::as_raw_fd(fd));
            Some(owned)
        }
        // In our user namespace (ChildPlan::child_opens_dev_fuse), with the host credentials we still
        // have, and before joining the cgroup, whose device rules deny /dev/fuse.
        None if plan.child_opens_dev_fuse() => {
            Some(strata_overlayfs::open_dev_fuse().map_err(setup("opening /dev/fuse"))?)
        }
        None => None,
    };
    if !late {
        join_cgroup(plan, cgroup_tasks)?;
    }
    if plan.namespaces.creates(Kind::User) {
        // The parent wrote our uid/gid maps before releasing us; become root of the new user namespace.
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(setup("setgid in user namespace"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(setup("setuid in user namespace"))?;
    }

    let old_umask = umask(Mode::empty());
    if let (Some(fuse), Some(dev_fuse)) = (&plan.fuse_mount, dev_fuse) {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(setup("making / private"))?;
        let fd = fuse(dev_fuse).map_err(|e| Failure {
            code: 125,
            message: format!("mounting the FUSE rootfs: {e}"),
        })?;
        chan.send(&Msg::FuseFd(fd))
            .map_err(setup("handing the FUSE fd to strata"))?;
        recv_go(chan, &mut after_go);
    }
    // Before the rootfs, which waits for a late cgroup at its end: these do not depend on it and fill
    // the time the parent takes to make it.
    if let Some(h) = &plan.hostname {
        sethostname(h).map_err(setup("setting the hostname"))?;
    }
    // A late-cgroup child's loopback is brought up by strata while we mount the cgroupfs (see
    // AfterGo::wait_ready), and a namespace strata made came with it up.
    if plan.loopback && !late && !plan.net_from_parent {
        crate::network::loopback_up().map_err(setup("bringing up loopback"))?;
    }
    // No HOME in the environment: the user's home from the container's passwd, read as root before the
    // switch to the user, as runc does (a passwd the user may not read still gives it). A user given by
    // name is looked up, home included, at the switch.
    let needs_home = plan.security.user_name.is_none()
        && !plan
            .exec
            .env
            .iter()
            .any(|e| e.as_bytes().starts_with(b"HOME="));
    let mut home = None;
    // The lookups the exec makes, made while we wait for a late cgroup (after pivot_root): through a
    // FUSE rootfs each is a round trip to the server, and the kernel keeps the answers for the exec.
    // Not the home of an OCI container, whose hooks may still change /etc/passwd.
    let mut look_up = || {
        if needs_home && plan.oci.is_none() {
            home = Some(crate::security::home_of(plan.security.uid));
        }
        // The first candidate that exists, as the exec will find it.
        let _ = (plan.exec.candidates.iter()).find(|c| nix::sys::stat::stat(c.as_c_str()).is_ok());
    };
    if let Some(rootfs) = &plan.rootfs {
        // A failed join is a setup failure (125) like the rootfs's own.
        rootfs
            .enter(trees, &mut |step| {
                match step {
                    crate::rootfs::Before::Sysfs => after_go.enter_net(chan).map(|()| None),
                    crate::rootfs::Before::Cgroupfs => after_go
                        .join(plan, chan, &mut look_up)
                        .map(|()| after_go.cgroupfs_tree.take()),
                }
                .map_err(|f| crate::rootfs::RootfsError::Spec(f.message))
            })
            .map_err(|e| Failure {
                code: 125,
                message: e.to_string(),
            })?;
    }
    // Without a sysfs mount (or a rootfs) to wait for.
    after_go.enter_net(chan)?;
    after_go.join(plan, chan, &mut look_up)?;
    umask(old_umask);
    let _ = chan.send(&Msg::RootfsDone(crate::container::phases::now_ns()));

    enter_workdir(&plan.exec)?;
    after_go.wait_ready(chan)?;
    // Only once the cgroup's limits are written: a late-joined v1 cgroup gets Docker's device rules as
    // "deny all, then allow each", and a pty opened in between is refused (EPERM) — which happened once
    // the child's set-up had become shorter than strata's.
    if let Some(console) = &plan.console {
        let tty =
            super::console::open_and_send(console).map_err(setup("setting up the terminal"))?;
        if let Some(size) = plan.console_size {
            crate::sys::set_window_size(std::os::fd::AsFd::as_fd(&tty), size)
                .map_err(setup("setting the terminal's size"))?;
        }
        crate::sys::make_controlling_tty(&tty).map_err(setup("setting up the terminal"))?;
    }
    if let Some(gate) = &plan.oci {
        *started = Some(wait_for_start(plan, gate, chan)?);
    }
    if needs_home && home.is_none() {
        home = Some(crate::security::home_of(plan.security.uid));
    }
    let uid = plan.security.apply().map_err(|e| Failure {
        code: 125,
        message: e.to_string(),
    })?;
    let with_home;
    let exec_plan = if plan
        .exec
        .env
        .iter()
        .any(|e| e.as_bytes().starts_with(b"HOME="))
    {
        &plan.exec
    } else {
        // Read above, or now for a user given by name, once it is known.
        let home = home.unwrap_or_else(|| crate::security::home_of(uid));
        with_home = plan
            .exec
            .with_env(&format!("HOME={home}"))
            .map_err(setup("setting HOME"))?;
        &with_home
    };
    if die_with_strata {
        // Credential changes cleared the parent-death signal; set it again for the container's lifetime.
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    }

    if plan.init {
        return super::init::run(exec_plan, chan);
    }
    Err(exec(exec_plan))
}

/// OCI `create` ends here: the command must exist (runc reports a missing one at create, not start), then
/// strata's create is told we are waiting and we block until `strata start` connects and sends the
/// state JSON, which the startContainer hooks get on stdin.
fn wait_for_start(
    plan: &ChildPlan,
    gate: &super::OciGate,
    chan: &Channel,
) -> Result<std::os::unix::net::UnixStream, Failure> {
    let found = plan.exec.candidates.iter().any(|c| {
        std::fs::metadata(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(c.to_bytes()),
        )
        .is_ok_and(|m| m.is_file())
    });
    if !found {
        return Err(exec(&plan.exec));
    }
    chan.send(&Msg::Waiting)
        .map_err(setup("telling strata the container is created"))?;
    let conn = loop {
        match nix::sys::socket::accept4(
            std::os::fd::AsRawFd::as_raw_fd(&gate.listener),
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(fd) => break std::os::unix::net::UnixStream::from(crate::sys::owned_fd(fd)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(setup("waiting for strata start")(e)),
        }
    };
    let mut state = Vec::new();
    std::io::Read::read_to_end(&mut (&conn), &mut state)
        .map_err(setup("reading the state from strata start"))?;
    crate::oci::hooks::run_all("startContainer", &gate.start_hooks, &state).map_err(|e| {
        Failure {
            code: 125,
            message: e.to_string(),
        }
    })?;
    Ok(conn)
}

fn enter_workdir(exec: &ExecPlan) -> Result<(), Failure> {
    if nix::unistd::chdir(&exec.cwd).is_ok() {
        return Ok(());
    }
    // Docker creates a missing working directory.
    std::fs::create_dir_all(&exec.cwd).map_err(|e| Failure {
        code: 125,
        message: format!("creating working directory {}: {e}", exec.cwd.display()),
    })?;
    nix::unistd::chdir(&exec.cwd).map_err(|e| Failure {
        code: 125,
        message: format!("entering working directory {}: {e}", exec.cwd.display()),
    })
}

/// Marks inherited fds close-on-exec, restores the signal mask and execs the first runnable candidate.
/// Returns only on failure, with Docker's status: 127 when nothing was found, 126 when found but not
/// executable.
/// "exec PATH: permission denied", with the C library's lower-case strerror as Go prints it: Docker
/// recognises a failed exec in the runtime's message by these words (126 for "permission denied", 127 for
/// "no such file or directory" / "executable file not found").
fn exec_error(path: &CStr, err: &std::io::Error) -> String {
    let text = err.to_string();
    let reason = text
        .split(" (os error")
        .next()
        .unwrap_or(&text)
        .to_lowercase();
    format!("cannot execute {}: {reason}", path.to_string_lossy())
}

pub fn exec(plan: &ExecPlan) -> Failure {
    if let Err(e) = crate::sys::cloexec_from(3) {
        return Failure {
            code: 125,
            message: format!("closing inherited fds: {e}"),
        };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let argv: Vec<*const libc::c_char> = plan
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = plan
        .env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let mut denied: Option<(&CStr, std::io::Error)> = None;
    let mut other: Option<(&CStr, std::io::Error)> = None;
    for path in &plan.candidates {
        let err = crate::sys::execve_raw(path, &argv, &envp);
        match Errno::from_raw(err.raw_os_error().unwrap_or(0)) {
            Errno::ENOENT | Errno::ENOTDIR => {}
            Errno::EACCES | Errno::EPERM => denied = denied.or(Some((path, err))),
            _ => other = other.or(Some((path, err))),
        }
    }
    let has_slash = plan.arg0.contains('/');
    match (denied, other) {
        (Some((p, e)), _) => Failure {
            code: 126,
            message: exec_error(p, &e),
        },
        (None, Some((p, e))) => Failure {
            code: 126,
            message: exec_error(p, &e),
        },
        (None, None) if has_slash => Failure {
            code: 127,
            message: format!("{}: no such file or directory in the container", plan.arg0),
        },
        (None, None) => Failure {
            code: 127,
            message: format!("{}: executable file not found in $PATH", plan.arg0),
        },
    }
}
