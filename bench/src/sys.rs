//! Every `unsafe` call of this crate, each behind a safe function.
//!
//! The children created here run in a copy of a multi-threaded process (the floor's in its very memory),
//! so they make raw syscalls only (no allocation, no locks) until they exec or `_exit`. Everything they need (paths, argv, pipe fds) is
//! prepared by the parent before the clone.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

/// CLONE_NEWTIME (0x80). Accepted by unshare(2) and setns(2) but not by clone(2), where the bit means
/// CSIGNAL; nix has no constant for it.
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(0x80);

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("{what}: {source}")]
    Errno {
        what: &'static str,
        source: nix::Error,
    },
    #[error("{what} child exited with status {status:?}")]
    Child {
        what: &'static str,
        status: WaitStatus,
    },
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
}

type Result<T> = std::result::Result<T, SysError>;

fn errno(what: &'static str) -> impl FnOnce(nix::Error) -> SysError {
    move |source| SysError::Errno { what, source }
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::Nul(p.display().to_string()))
}

/// A stack for cloned children. Without CLONE_VM the child writes to its own copy, so one stack can be
/// reused for every clone of the same thread.
pub struct CloneStack(Vec<u8>);

impl Default for CloneStack {
    fn default() -> Self {
        CloneStack(vec![0u8; 64 * 1024])
    }
}

/// clone(2) with `flags`, the child running `child` (raw syscalls only); returns the child's pid.
fn clone_raw(
    stack: &mut CloneStack,
    flags: CloneFlags,
    child: &mut dyn FnMut() -> isize,
) -> Result<Pid> {
    let cb: Box<dyn FnMut() -> isize + '_> = Box::new(child);
    // SAFETY: the callback only makes async-signal-safe raw syscalls and ends in exec or _exit; the stack
    // is 64 KiB, far more than those frames need.
    unsafe { nix::sched::clone(cb, &mut stack.0, flags, Some(libc::SIGCHLD)) }
        .map_err(errno("clone"))
}

/// Wait for `pid` and require exit status 0.
pub fn wait_ok(pid: Pid, what: &'static str) -> Result<()> {
    match waitpid(pid, None).map_err(errno("waitpid"))? {
        WaitStatus::Exited(_, 0) => Ok(()),
        status => Err(SysError::Child { what, status }),
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and ends the child without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

/// CLOCK_MONOTONIC in ns: the clock of strata's STRATA_PHASES timestamps.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn write_u64(fd: RawFd, v: u64) {
    let b = v.to_ne_bytes();
    // SAFETY: b is a valid buffer of 8 bytes.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

fn read_u64(fd: &OwnedFd) -> Result<u64> {
    let mut b = [0u8; 8];
    let n = nix::unistd::read(fd, &mut b).map_err(errno("read from child"))?;
    if n != 8 {
        return Err(SysError::Errno {
            what: "child reported nothing",
            source: nix::Error::EIO,
        });
    }
    Ok(u64::from_ne_bytes(b))
}

/// clone() with `flags`; the child exits at once. Returns when the child has been reaped.
pub fn clone_and_exit(stack: &mut CloneStack, flags: CloneFlags) -> Result<()> {
    let pid = clone_raw(stack, flags, &mut || 0)?;
    wait_ok(pid, "clone")
}

/// In a fresh single-threaded child, time `unshare(flags)` with CLOCK_MONOTONIC (the child's own exit
/// is not part of the figure).
pub fn time_unshare(stack: &mut CloneStack, flags: CloneFlags) -> Result<Duration> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe2"))?;
    let wfd = w.as_raw_fd();
    let bits = flags.bits();
    let pid = clone_raw(stack, CloneFlags::empty(), &mut || {
        let t0 = now_ns();
        // SAFETY: raw unshare(2) in the child only.
        let rc = unsafe { libc::unshare(bits) };
        let t1 = now_ns();
        if rc != 0 {
            exit(1);
        }
        write_u64(wfd, t1 - t0);
        0
    })?;
    drop(w);
    let ns = read_u64(&r);
    wait_ok(pid, "unshare")?;
    Ok(Duration::from_nanos(ns?))
}

/// In a fresh single-threaded child, time `setns(ns_fd, nstype)`.
pub fn time_setns(
    stack: &mut CloneStack,
    ns_fd: BorrowedFd<'_>,
    nstype: CloneFlags,
) -> Result<Duration> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe2"))?;
    let (wfd, nfd, bits) = (w.as_raw_fd(), ns_fd.as_raw_fd(), nstype.bits());
    let pid = clone_raw(stack, CloneFlags::empty(), &mut || {
        let t0 = now_ns();
        // SAFETY: raw setns(2) in the child only; nfd is open (inherited).
        let rc = unsafe { libc::setns(nfd, bits) };
        let t1 = now_ns();
        if rc != 0 {
            exit(1);
        }
        write_u64(wfd, t1 - t0);
        0
    })?;
    drop(w);
    let ns = read_u64(&r);
    wait_ok(pid, "setns")?;
    Ok(Duration::from_nanos(ns?))
}

/// A seccomp BPF program in the kernel's layout (`struct sock_filter`), for [`time_seccomp`].
#[derive(Clone)]
pub struct SeccompFilter(Vec<libc::sock_filter>);

impl SeccompFilter {
    /// From `(code, jt, jf, k)` instructions.
    pub fn new(ins: impl IntoIterator<Item = (u16, u8, u8, u32)>) -> Self {
        SeccompFilter(
            ins.into_iter()
                .map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
                .collect(),
        )
    }
    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A syscall that a [`time_seccomp`] child makes `count` times; only calls that take no pointers (or
/// null ones) can be built.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    nr: libc::c_long,
    args: [libc::c_long; 5],
    count: u32,
}

impl Probe {
    /// getppid(2): allowed by the default filter, whose verdict for it the kernel caches.
    pub fn getppid(count: u32) -> Probe {
        Probe {
            nr: libc::SYS_getppid,
            args: [0; 5],
            count,
        }
    }
    /// mount_setattr(-1, NULL, 0, NULL, 0): refused with EPERM by the default filter (so the kernel runs
    /// the filter on every call); without one the kernel answers EINVAL (size 0) before touching anything.
    /// The highest number of the default deny-list, so the last one a linear chain reaches.
    pub fn mount_setattr(count: u32) -> Probe {
        Probe {
            nr: libc::SYS_mount_setattr,
            args: [-1, 0, 0, 0, 0],
            count,
        }
    }
    pub fn count(&self) -> u32 {
        self.count
    }
}

/// What a [`time_seccomp`] child measured.
#[derive(Clone, Copy, Debug)]
pub struct SeccompTiming {
    /// no_new_privs plus installing every filter.
    pub install: Duration,
    /// All `count` calls of the probe.
    pub calls: Duration,
    /// errno of the probe's last call, 0 when it succeeded.
    pub last_errno: i32,
}

/// In a fresh single-threaded child: set no_new_privs and install `filters` in order (timed together
/// with CLOCK_MONOTONIC), then make the probe call `count` times (timed on its own). The child's creation
/// and exit are not part of either figure.
pub fn time_seccomp(
    stack: &mut CloneStack,
    filters: &[SeccompFilter],
    probe: Probe,
) -> Result<SeccompTiming> {
    let progs = filters
        .iter()
        .map(|f| {
            Ok(libc::sock_fprog {
                len: libc::c_ushort::try_from(f.0.len()).map_err(|_| SysError::Errno {
                    what: "seccomp filter too long",
                    source: nix::Error::E2BIG,
                })?,
                filter: f.0.as_ptr().cast_mut(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe2"))?;
    let wfd = w.as_raw_fd();
    let Probe { nr, args: a, count } = probe;
    let pid = clone_raw(stack, CloneFlags::empty(), &mut || {
        let t0 = now_ns();
        // SAFETY: raw prctl and seccomp(2) in the child only; each sock_fprog points into a filter owned
        // by the caller, which outlives the child (the parent waits for it below).
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                exit(1);
            }
            for p in &progs {
                let p: *const libc::sock_fprog = p;
                if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, p) != 0 {
                    exit(2);
                }
            }
        }
        let t1 = now_ns();
        let mut last_errno = 0;
        for _ in 0..count {
            // SAFETY: a Probe is one of the calls built above, none of which passes a pointer.
            let rc = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) };
            last_errno = if rc < 0 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
            } else {
                0
            };
        }
        let t2 = now_ns();
        write_u64(wfd, t1 - t0);
        write_u64(wfd, t2 - t1);
        write_u64(wfd, last_errno as u64);
        0
    })?;
    drop(w);
    let got = (read_u64(&r), read_u64(&r), read_u64(&r));
    wait_ok(pid, "seccomp")?;
    Ok(SeccompTiming {
        install: Duration::from_nanos(got.0?),
        calls: Duration::from_nanos(got.1?),
        last_errno: got.2? as i32,
    })
}

/// What a [`NsHolder`] does in its new mount namespace before it waits.
pub struct HolderSetup {
    /// Make every mount a slave of the host's so nothing propagates back (needed before any change).
    pub make_rslave: bool,
    /// Mount points to lazily unmount (e.g. /sys/fs/cgroup/unified, which crun refuses on hybrid hosts).
    pub umount: Vec<CString>,
    /// Existing directories on which to mount a small tmpfs each (extra mounts for the scaling cases).
    pub tmpfs_at: Vec<CString>,
    /// Flags for an unshare(2) after the clone (for CLONE_NEWTIME, which clone(2) cannot take; the new
    /// time namespace is then /proc/<pid>/ns/time_for_children).
    pub unshare: CloneFlags,
}

impl Default for HolderSetup {
    fn default() -> Self {
        HolderSetup {
            make_rslave: false,
            umount: Vec::new(),
            tmpfs_at: Vec::new(),
            unshare: CloneFlags::empty(),
        }
    }
}

/// A child process that holds namespaces open (created with `flags`) until dropped. Its namespaces are
/// reachable as /proc/<pid>/ns/*.
pub struct NsHolder {
    pid: Pid,
    release: Option<OwnedFd>,
}

impl NsHolder {
    pub fn spawn(flags: CloneFlags, setup: &HolderSetup) -> Result<NsHolder> {
        let mut stack = CloneStack::default();
        let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe2"))?;
        let (wait_r, wait_w) = pipe2(OFlag::O_CLOEXEC).map_err(errno("pipe2"))?;
        let (rw, wr, ww) = (ready_w.as_raw_fd(), wait_r.as_raw_fd(), wait_w.as_raw_fd());
        let umounts: Vec<&CStr> = setup.umount.iter().map(CString::as_c_str).collect();
        let tmpfs: Vec<&CStr> = setup.tmpfs_at.iter().map(CString::as_c_str).collect();
        let (root, fstype, opts) = (c"/", c"tmpfs", c"size=64k");
        let rslave = setup.make_rslave;
        let unshare_bits = setup.unshare.bits();
        let pid = clone_raw(&mut stack, flags, &mut || {
            // SAFETY: raw syscalls on pointers to strings prepared by the parent.
            unsafe {
                // Keep only the two pipe ends (as fds 0 and 1): a holder must not keep other holders' release
                // pipes open, or releasing those would wait for this one.
                let _ = ww;
                if libc::dup2(wr, 0) < 0 || libc::dup2(rw, 1) < 0 {
                    exit(6);
                }
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                if unshare_bits != 0 && libc::unshare(unshare_bits) != 0 {
                    exit(5);
                }
                if rslave
                    && libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_SLAVE,
                        std::ptr::null(),
                    ) != 0
                {
                    exit(2);
                }
                for m in &umounts {
                    if libc::umount2(m.as_ptr(), libc::MNT_DETACH) != 0 {
                        exit(3);
                    }
                }
                for t in &tmpfs {
                    if libc::mount(
                        fstype.as_ptr(),
                        t.as_ptr(),
                        fstype.as_ptr(),
                        0,
                        opts.as_ptr().cast(),
                    ) != 0
                    {
                        exit(4);
                    }
                }
                write_u64(1, 1);
                let mut b = [0u8; 1];
                libc::read(0, b.as_mut_ptr().cast(), 1);
            }
            0
        })?;
        drop((ready_w, wait_r));
        let holder = NsHolder {
            pid,
            release: Some(wait_w),
        };
        match read_u64(&ready_r) {
            Ok(_) => Ok(holder),
            Err(_) => {
                let mut holder = holder;
                holder.release.take();
                wait_ok(pid, "namespace holder")?;
                Err(SysError::Errno {
                    what: "namespace holder set-up",
                    source: nix::Error::EIO,
                })
            }
        }
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Open /proc/<pid>/ns/<kind> (O_CLOEXEC).
    pub fn ns_fd(&self, kind: &str) -> Result<OwnedFd> {
        let path = format!("/proc/{}/ns/{kind}", self.pid);
        nix::fcntl::open(
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(errno("open namespace file"))
    }

    /// Let the holder exit and reap it: the time this takes is the synchronous part of tearing down its
    /// namespaces (a net namespace's cleanup continues in a kernel worker after this returns).
    pub fn release(mut self) -> Result<()> {
        self.release.take();
        wait_ok(self.pid, "namespace holder")
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        if self.release.take().is_some() {
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Everything the floor's child needs, prepared before the clone.
pub struct FloorPlan {
    rootfs: CString,
    exe: CString,
    argv: [*const libc::c_char; 2],
    envp: [*const libc::c_char; 2],
    env: CString,
}

// SAFETY: the raw pointers point into CStrings owned by the plan itself (exe, env), never mutated.
unsafe impl Send for FloorPlan {}
// SAFETY: as above; shared use only reads.
unsafe impl Sync for FloorPlan {}

impl FloorPlan {
    /// `rootfs` must contain `exe` (absolute inside the rootfs) and an empty /proc.
    pub fn new(rootfs: &Path, exe: &str) -> Result<Box<FloorPlan>> {
        let mut plan = Box::new(FloorPlan {
            rootfs: cstring(rootfs)?,
            exe: CString::new(exe).map_err(|_| SysError::Nul(exe.into()))?,
            argv: [std::ptr::null(); 2],
            envp: [std::ptr::null(); 2],
            env: c"PATH=/bin".to_owned(),
        });
        plan.argv[0] = plan.exe.as_ptr();
        plan.envp[0] = plan.env.as_ptr();
        Ok(plan)
    }
}

/// The startup floor: clone(flags) → make / private → bind the rootfs → pivot_root → lazy-unmount the old
/// root → mount /proc → exec. Optionally starts from a copy of `mnt_ns` (the scaling cases' mount namespace).
/// Returns when the container process has exited and been reaped.
///
/// The child shares the caller's memory until its exec (CLONE_VM | CLONE_VFORK, as posix_spawn does):
/// a plain clone copies the caller's address space, whose size is the bench's and not the floor's. Late
/// in a standard run that copy made the floor 3.8 ms against 2.4 ms for the same floor in a program of
/// its own (floor-exec). The calling thread waits until the child has exec'd (or exited).
pub fn floor_run(
    stack: &mut CloneStack,
    plan: &FloorPlan,
    flags: CloneFlags,
    mnt_ns: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let mnt_fd = mnt_ns.map(|f| f.as_raw_fd());
    // With a namespace to start from, the child joins it and then unshares its own copy of it (joining
    // alone would let pivot_root rearrange the shared namespace itself).
    let flags = if mnt_fd.is_some() {
        flags - CloneFlags::CLONE_NEWNS
    } else {
        flags
    } | CloneFlags::CLONE_VM
        | CloneFlags::CLONE_VFORK;
    let pid = clone_raw(stack, flags, &mut || {
        let null = std::ptr::null::<libc::c_char>();
        let (root, dot, proc_, proc_t) = (c"/", c".", c"/proc", c"proc");
        // SAFETY: raw syscalls on strings owned by `plan`, which outlives the child (it execs or exits).
        // Sharing the caller's memory, the child writes nothing but its own stack (and errno, of the
        // caller's thread, which is suspended until the exec).
        unsafe {
            if let Some(fd) = mnt_fd
                && (libc::setns(fd, libc::CLONE_NEWNS) != 0
                    || libc::unshare(libc::CLONE_NEWNS) != 0)
            {
                exit(10);
            }
            if libc::mount(
                null,
                root.as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                exit(11);
            }
            if libc::mount(
                plan.rootfs.as_ptr(),
                plan.rootfs.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                exit(12);
            }
            if libc::chdir(plan.rootfs.as_ptr()) != 0 {
                exit(13);
            }
            if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
                exit(14);
            }
            if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
                exit(15);
            }
            if libc::chdir(root.as_ptr()) != 0 {
                exit(16);
            }
            let f = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            if libc::mount(
                proc_t.as_ptr(),
                proc_.as_ptr(),
                proc_t.as_ptr(),
                f,
                std::ptr::null(),
            ) != 0
            {
                exit(17);
            }
            libc::execve(plan.exe.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        }
        exit(18)
    })?;
    wait_ok(pid, "floor container")
}

/// The calling thread in another mount namespace until dropped, then back in its own: commands it spawns
/// meanwhile start there. They are spawned as any other (posix_spawn's clone that shares the spawner's
/// memory until the exec), not forked as a pre_exec hook would force: a fork copies the bench's address
/// space, which late in a standard run added up to 2.6 ms to every start of a subject spawned that way.
/// The switch itself is made before and after the timed part. setns puts the thread at the namespace's
/// root: its working directory is restored on the way back (relative paths, such as the default results
/// folder, stay where they were).
pub struct InMountNs {
    back: OwnedFd,
    cwd: OwnedFd,
}

impl InMountNs {
    pub fn enter(ns: BorrowedFd<'_>) -> Result<InMountNs> {
        // setns(CLONE_NEWNS) refuses a thread that shares its root and cwd (fs_struct) with others: this
        // thread gets its own copy, once (later calls find it unshared and do nothing).
        nix::sched::unshare(CloneFlags::CLONE_FS).map_err(errno("unshare(CLONE_FS)"))?;
        let back = nix::fcntl::open(
            "/proc/thread-self/ns/mnt",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(errno("open /proc/thread-self/ns/mnt"))?;
        let cwd = nix::fcntl::open(
            ".",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(errno("open the working directory"))?;
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNS).map_err(errno("setns(mnt)"))?;
        Ok(InMountNs { back, cwd })
    }
}

impl Drop for InMountNs {
    fn drop(&mut self) {
        let back = nix::sched::setns(&self.back, CloneFlags::CLONE_NEWNS)
            .and_then(|()| nix::unistd::fchdir(&self.cwd));
        if let Err(e) = back {
            // Every later start of this thread would run in the wrong place: stop here.
            eprintln!("strata-bench: returning to the bench's mount namespace: {e}");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A thread that starts commands in another mount namespace comes back to it and to its working
    /// directory (setns alone leaves it at the namespace's root, where the results folder once went).
    #[test]
    fn in_mount_ns_returns_to_the_namespace_and_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            // This thread's own root and cwd, so the chdir below touches no other test.
            nix::sched::unshare(CloneFlags::CLONE_FS).unwrap();
            std::env::set_current_dir(&path).unwrap();
            let ns_of = || std::fs::read_link("/proc/thread-self/ns/mnt").unwrap();
            let before = ns_of();
            // Our own namespace will do: setns resets the root and cwd even when entering the same one.
            let own = std::fs::File::open("/proc/thread-self/ns/mnt").unwrap();
            {
                let _in = InMountNs::enter(own.as_fd()).unwrap();
                assert_eq!(std::env::current_dir().unwrap(), Path::new("/"));
            }
            assert_eq!(ns_of(), before);
            assert_eq!(std::env::current_dir().unwrap(), path);
        })
        .join()
        .unwrap();
    }
}
