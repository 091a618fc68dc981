//! Every `unsafe` call of this crate, each behind a safe function.
//!
//! Sections are owned by different parts of the runtime; keep additions inside the section of the module
//! that needs them so parallel work merges cleanly.

// ============================================================================================================
// Process creation, namespaces and rootfs (used by process/, container/, rootfs/)
// ============================================================================================================

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::Pid;

mod syscall_task;
pub use syscall_task::{
    Made, SyscallTask, close_concurrently, detach_cwd_mount_concurrently, fsmount_task,
    new_netns_task,
};

/// `struct clone_args` of clone3(2), up to and including `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Creates a child process with clone3(2) — fork semantics (no shared memory, no new stack) plus the given
/// `CLONE_NEW*` `flags` and, when `cgroup` is a cgroup v2 directory fd, `CLONE_INTO_CGROUP` so the child
/// starts inside its cgroup. The child runs `child` and exits with its return value; it never returns here.
///
/// strata calls this only while it is single-threaded (no other thread can hold a lock the child would
/// need), which is what makes running ordinary Rust code in the child sound — the same contract as fork(2).
pub fn clone3_run<F: FnOnce() -> i32>(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
    child: F,
) -> io::Result<Pid> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size we pass; without CLONE_VM the child gets a copy of
    // the address space (fork semantics), so the current stack stays valid in both processes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    run_in_child(rc, child)
}

/// After a fork-like clone that returned `rc`: in the child (0) runs `child` and exits with its return
/// value (125 if it panics); in the parent returns the child's pid, or the clone's error.
fn run_in_child<F: FnOnce() -> i32>(rc: libc::c_long, child: F) -> io::Result<Pid> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(125);
        exit_now(code);
    }
    Ok(Pid::from_raw(rc as i32))
}

/// Ends the calling process at once, without running atexit handlers or flushing stdio buffers that a
/// forked child shares with its parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Marks every fd from `first` upwards close-on-exec (close_range(2) with CLOSE_RANGE_CLOEXEC), so nothing
/// strata inherited leaks into the container.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain syscall on integer arguments; it only changes fd flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// pidfd_open(2): a stable handle on a process (for setns of all its namespaces at once).
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the kernel returns a new fd that we own.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc is a freshly opened fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// execve(2) that only returns on failure (with the errno), taking pre-built C strings so the child does
/// no allocation on the way to exec.
pub fn execve_raw(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    debug_assert!(
        argv.last().is_some_and(|p| p.is_null()) && envp.last().is_some_and(|p| p.is_null())
    );
    // SAFETY: path is NUL-terminated, argv and envp are NULL-terminated arrays of pointers to C strings
    // that the caller keeps alive (they are borrowed for the duration of this call).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// fork(2) for strata's own helper processes (detach monitor, the built-in init's command); same
/// single-threaded contract as [`clone3_run`]. Uses clone(2) rather than clone3 because the built-in init
/// forks under the container's seccomp filter, which answers clone3 with ENOSYS.
pub fn fork_run<F: FnOnce() -> i32>(child: F) -> io::Result<Pid> {
    // SAFETY: clone with only SIGCHLD and a null stack is fork(2): the child gets a copy of the address
    // space and continues on (its copy of) the current stack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    run_in_child(rc, child)
}

/// `bytes` NUL-terminated for a system call; InvalidInput when they hold a NUL.
fn c_string(bytes: impl Into<Vec<u8>>) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `path` NUL-terminated for a system call.
fn c_path(path: &std::path::Path) -> io::Result<std::ffi::CString> {
    c_string(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
}

/// A detached copy of the mount tree at `path` (open_tree(2) with OPEN_TREE_CLONE), not yet attached
/// anywhere; the handle for an idmapped rootfs.
pub fn open_tree_clone(path: &std::path::Path) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = c_path(path)?;
    // SAFETY: c is a valid NUL-terminated path; on success the kernel returns a new fd we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc is a freshly opened fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Makes the detached mount `tree` idmapped through the user namespace `userns` (mount_setattr(2) with
/// MOUNT_ATTR_IDMAP): files owned by host uid N appear owned by the id N maps to in that namespace.
pub fn idmap_mount(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    mount_setattr(
        tree,
        MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        },
    )
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount `tree` itself (not its submounts).
fn mount_setattr(tree: BorrowedFd<'_>, attr: MountAttr) -> io::Result<()> {
    // SAFETY: attr is a valid mount_attr of the size passed; "" with AT_EMPTY_PATH names `tree` itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached mount `tree` at `target` (move_mount(2)).
pub fn move_mount_to(tree: BorrowedFd<'_>, target: &std::path::Path) -> io::Result<()> {
    move_mount_at(tree, libc::AT_FDCWD, target)
}

/// Attaches the detached mount `tree` at `target` relative to the directory `dir`, which may itself lie
/// in a detached tree (the kernel allows mounting onto one): a tree of mounts is assembled off any
/// namespace and attached later, submounts and all, by one move_mount.
pub fn move_mount_into(
    tree: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    target: &std::path::Path,
) -> io::Result<()> {
    move_mount_at(tree, dir.as_raw_fd(), target)
}

fn move_mount_at(tree: BorrowedFd<'_>, dir: RawFd, target: &std::path::Path) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let c = c_path(target)?;
    // SAFETY: valid fds (or AT_FDCWD) and NUL-terminated paths; "" with F_EMPTY_PATH names `tree`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dir,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A raw system call's return value: the value, or the errno it left as an error.
fn checked(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The MOUNT_ATTR_* bits of mount(2)'s per-mount flags in `flags` (read-only, nosuid, nodev, noexec,
/// atime); relatime is 0.
fn mount_attrs(flags: nix::mount::MsFlags) -> u64 {
    use nix::mount::MsFlags;
    [
        (MsFlags::MS_RDONLY, 0x1),
        (MsFlags::MS_NOSUID, 0x2),
        (MsFlags::MS_NODEV, 0x4),
        (MsFlags::MS_NOEXEC, 0x8),
        (MsFlags::MS_NOATIME, 0x10),
        (MsFlags::MS_STRICTATIME, 0x20),
        (MsFlags::MS_NODIRATIME, 0x80),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .fold(0, |a, (_, bit)| a | bit)
}

/// Makes the filesystem of the mount `tree` read-only as a whole, superblock and all (fspick(2), then
/// fsconfig's "ro" and reconfigure), as a remount without MS_BIND does.
pub fn make_filesystem_readonly(tree: BorrowedFd<'_>) -> io::Result<()> {
    const FSPICK_CLOEXEC: libc::c_uint = 1;
    const FSPICK_EMPTY_PATH: libc::c_uint = 8;
    // SAFETY: valid fd; "" with FSPICK_EMPTY_PATH names `tree` itself; on success the kernel returns a
    // new fd we own.
    let fs = checked(unsafe {
        libc::syscall(
            libc::SYS_fspick,
            tree.as_raw_fd(),
            c"".as_ptr(),
            FSPICK_CLOEXEC | FSPICK_EMPTY_PATH,
        )
    })?;
    // SAFETY: as above.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    fsconfig(fs.as_fd(), Fsconfig::Flag(c"ro"))?;
    fsconfig(fs.as_fd(), Fsconfig::Reconfigure)
}

/// One fsconfig(2) command.
enum Fsconfig<'a> {
    /// FSCONFIG_SET_FLAG.
    Flag(&'a CStr),
    /// FSCONFIG_SET_STRING.
    String(&'a CStr, &'a CStr),
    /// FSCONFIG_CMD_CREATE.
    Create,
    /// FSCONFIG_CMD_RECONFIGURE.
    Reconfigure,
}

impl<'a> Fsconfig<'a> {
    /// Sets `key` to `value`, or the flag `key` when there is no value.
    fn set(key: &'a CStr, value: Option<&'a CStr>) -> Fsconfig<'a> {
        match value {
            Some(v) => Fsconfig::String(key, v),
            None => Fsconfig::Flag(key),
        }
    }

    /// fsconfig(2)'s command number, key and value (null where the command takes none).
    fn raw(&self) -> (libc::c_uint, *const libc::c_char, *const libc::c_char) {
        let none = std::ptr::null::<libc::c_char>();
        match self {
            Fsconfig::Flag(k) => (0, k.as_ptr(), none),
            Fsconfig::String(k, v) => (1, k.as_ptr(), v.as_ptr()),
            Fsconfig::Create => (6, none, none),
            Fsconfig::Reconfigure => (7, none, none),
        }
    }
}

fn fsconfig(fs: BorrowedFd<'_>, command: Fsconfig<'_>) -> io::Result<()> {
    let (cmd, key, value) = command.raw();
    // SAFETY: valid fs fd; the key and value are NUL-terminated and outlive the call, or null where the
    // command takes none.
    checked(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, 0) })
        .map(drop)
}

/// Sets the per-mount flags in `flags` (read-only, nosuid, nodev, noexec) on the mount `tree` alone, not
/// its submounts (mount_setattr(2)); flags not named are left as they are.
pub fn set_mount_flags(tree: BorrowedFd<'_>, flags: nix::mount::MsFlags) -> io::Result<()> {
    // The atime bits form one field that must be cleared as a whole when one of them is set: left out.
    mount_setattr(
        tree,
        MountAttr {
            attr_set: mount_attrs(flags) & 0xf,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        },
    )
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// What a new mount is configured with, in order, NUL-terminated: its source, then `params` (a value,
/// or none for a flag).
fn fsconfig_settings(
    source: &str,
    params: &[(&str, Option<&str>)],
) -> io::Result<Vec<(std::ffi::CString, Option<std::ffi::CString>)>> {
    std::iter::once(("source", Some(source)))
        .chain(params.iter().copied())
        .map(|(k, v)| Ok((c_string(k)?, v.map(c_string).transpose()?)))
        .collect()
}

/// A new mount of filesystem `fstype`, attached nowhere (fsopen, fsconfig, fsmount): `source` is its
/// device name, `params` its parameters in order (a value, or none for a flag), `flags` the per-mount
/// flags of mount(2) it gets (nosuid, nodev, noexec, read-only, atime). It is attached with
/// [`move_mount_to`]; unattached, it is unmounted when its last fd closes.
pub fn fsmount_detached(
    fstype: &CStr,
    source: &str,
    params: &[(&str, Option<&str>)],
    flags: nix::mount::MsFlags,
) -> io::Result<OwnedFd> {
    let attrs = mount_attrs(flags) as libc::c_uint;
    let settings = fsconfig_settings(source, params)?;
    // SAFETY: fstype is NUL-terminated; on success the kernel returns a new fd we own.
    let fs = checked(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: as above.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    for (k, v) in &settings {
        fsconfig(fs.as_fd(), Fsconfig::set(k, v.as_deref()))?;
    }
    fsconfig(fs.as_fd(), Fsconfig::Create)?;
    // SAFETY: valid fs fd, known flags; on success the kernel returns a new fd we own.
    let m = checked(unsafe {
        libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs)
    })?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(m as RawFd) })
}

/// Takes ownership of an fd the kernel just installed for us (an SCM_RIGHTS message) and nobody else owns.
pub fn owned_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass only fds freshly received from the kernel, owned by no other object.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// ============================================================================================================
// end of the process-creation section
// ============================================================================================================

// ======================================================================================
// Network (resources helper): interface flags by ioctl, and running a command in a netns.
// Kept in one section so the core helper's edits of this file do not collide with it.
// ======================================================================================

/// An `ifreq` carrying an interface name (at most 15 bytes, as the kernel's IFNAMSIZ allows).
fn ifreq_for(name: &str) -> std::io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value (empty name, zero union).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn ioctl_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)
}

/// The SIOCGIFFLAGS flags of interface `name` in the calling thread's network namespace.
pub fn interface_flags(name: &str) -> std::io::Result<i32> {
    use std::os::fd::AsRawFd;
    let sock = ioctl_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: valid socket fd and a properly initialised ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }) & 0xffff)
}

/// Sets IFF_UP on interface `name` in the calling thread's network namespace (no process spawned).
pub fn set_interface_up(name: &str) -> std::io::Result<()> {
    set_interface_up_via(&ioctl_socket()?, name)
}

/// Sets IFF_UP on interface `name` in the network namespace `netns` (an open /proc/PID/ns/net): the
/// thread enters it just long enough to make a socket there (an interface ioctl acts in the socket's
/// namespace), then returns to `own` (its own, opened by the caller).
pub fn set_interface_up_in(
    netns: std::os::fd::BorrowedFd<'_>,
    own: std::os::fd::BorrowedFd<'_>,
    name: &str,
) -> std::io::Result<()> {
    use nix::sched::{CloneFlags, setns};
    setns(netns, CloneFlags::CLONE_NEWNET)?;
    let sock = ioctl_socket();
    setns(own, CloneFlags::CLONE_NEWNET)?;
    set_interface_up_via(&sock?, name)
}

/// A new network namespace with its loopback up, made by the calling thread, which enters it just long
/// enough to make it and its ioctl socket and then returns to `own` (its own, opened by the caller). The
/// namespace lives as long as the returned fd or a process in it. An error of the way back leaves the
/// thread in the new namespace (the caller gives up the container then).
pub fn new_netns_with_loopback(
    own: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sched::{CloneFlags, setns, unshare};
    unshare(CloneFlags::CLONE_NEWNET)?;
    let made = std::fs::File::open("/proc/thread-self/ns/net").map(std::os::fd::OwnedFd::from);
    let sock = ioctl_socket();
    // Back first, whatever failed in between.
    setns(own, CloneFlags::CLONE_NEWNET)?;
    set_interface_up_via(&sock?, "lo")?;
    made
}

fn set_interface_up_via(sock: &std::os::fd::OwnedFd, name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut req = ifreq_for(name)?;
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the flags member was filled by SIOCGIFFLAGS; we only OR a bit into it.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: valid fd and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` enter the network namespace `netns` (an open /proc/PID/ns/net) before exec.
pub fn command_in_netns(cmd: &mut std::process::Command, netns: std::os::fd::OwnedFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and only calls setns(2), which is
    // async-signal-safe; the fd is owned by the closure and so stays open until then.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
}

// ============================================================================================================
// OCI runtime command line (used by process/child.rs and container/oci*.rs)
// ============================================================================================================

/// Makes the pty slave `tty` the caller's stdin, stdout, stderr and controlling terminal (the caller has
/// just called setsid).
pub fn make_controlling_tty(tty: &OwnedFd) -> io::Result<()> {
    for target in 0..=2 {
        // SAFETY: dup2 on a valid fd and a standard fd number; it only changes the fd table.
        if unsafe { libc::dup2(tty.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal from another session).
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs a seccomp BPF program without setting no_new_privs (seccompiler's apply_filter always sets
/// it), for a spec with `noNewPrivileges: false`; needs CAP_SYS_ADMIN.
pub fn install_seccomp_keeping_privs(prog: &[seccompiler::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter is #[repr(C)] with the same fields as the kernel's (and libc's).
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points to `len` valid filter instructions that outlive the call; the kernel copies
    // them.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ============================================================================================================
// cgroups (used by cgroups/)
// ============================================================================================================

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `prog_name`.
#[repr(C)]
#[derive(Default)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The `BPF_PROG_ATTACH` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BpfProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` for BPF_OBJ_PIN and BPF_OBJ_GET.
#[repr(C)]
#[derive(Default)]
struct BpfObj {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;

fn bpf(cmd: libc::c_long, attr: *const libc::c_void, size: usize) -> io::Result<i64> {
    // SAFETY: callers pass a pointer to a live, fully initialised bpf_attr member of `size` bytes whose
    // own pointers (instructions, license, log, path) stay valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads `insns` (each a `struct bpf_insn`) as a `BPF_PROG_TYPE_CGROUP_DEVICE` program. A program the
/// verifier rejects fails with the verifier's log as the error's message.
pub fn load_device_program(insns: &[crate::cgroups::devices::Insn]) -> io::Result<OwnedFd> {
    const LICENSE: &CStr = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let mut load = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..Default::default()
    };
    load.prog_name[..6].copy_from_slice(b"strata");
    match bpf(
        BPF_PROG_LOAD,
        (&raw const load).cast(),
        size_of::<BpfProgLoad>(),
    ) {
        Ok(fd) => Ok(owned_fd(fd as RawFd)),
        Err(first) => {
            // Load again with the verifier's log, for a message that says why.
            load.log_level = 1;
            load.log_size = log.len() as u32;
            load.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(
                BPF_PROG_LOAD,
                (&raw const load).cast(),
                size_of::<BpfProgLoad>(),
            );
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            Err(io::Error::new(
                first.kind(),
                format!("{first}; verifier: {}", text.replace('\n', " | ")),
            ))
        }
    }
}

/// Attaches the device program `prog` to the cgroup v2 directory `cgroup` (BPF_F_ALLOW_MULTI, so
/// programs of ancestors keep applying too, as under runc and systemd). The cgroup holds the program
/// from then on; it goes with the cgroup.
pub fn attach_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let attach = BpfProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(
        BPF_PROG_ATTACH,
        (&raw const attach).cast(),
        size_of::<BpfProgAttach>(),
    )?;
    Ok(())
}

/// Pins the BPF object `fd` at `path` in a bpffs (BPF_OBJ_PIN).
pub fn bpf_obj_pin(fd: BorrowedFd<'_>, path: &CStr) -> io::Result<()> {
    let attr = BpfObj {
        pathname: path.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    bpf(BPF_OBJ_PIN, (&raw const attr).cast(), size_of::<BpfObj>()).map(drop)
}

/// Opens the BPF object pinned at `path` (BPF_OBJ_GET).
pub fn bpf_obj_get(path: &CStr) -> io::Result<OwnedFd> {
    let attr = BpfObj {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    bpf(BPF_OBJ_GET, (&raw const attr).cast(), size_of::<BpfObj>()).map(|fd| owned_fd(fd as RawFd))
}

// ============================================================================================================
// Terminals (used by process/tty.rs)
// ============================================================================================================

/// The window size of the terminal `fd` (TIOCGWINSZ).
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize to the pointer, which points to a live one.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ws)
}

/// Sets the window size of the terminal `fd` to (rows, columns) (TIOCSWINSZ); its foreground process
/// group gets SIGWINCH.
pub fn set_window_size(fd: BorrowedFd<'_>, (rows, cols): (u16, u16)) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one struct winsize from the pointer, which points to a live one.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
