//! System calls made by a task of their own, so that what they wait for is off their creator's path.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::unistd::Pid;

/// A task that makes a short, fixed sequence of system calls for its creator and exits, so that what
/// the calls wait for is not waited for on the creator's path: detaching the old root
/// ([`detach_cwd_mount_concurrently`]), dropping the last reference to a mount namespace
/// ([`close_concurrently`]), each of which waits for an RCU grace period (~0.1 ms here, milliseconds
/// when the kthread that drives it queues behind a busy task) and the second also unmounts every mount
/// of the namespace; or making a network namespace or mounting an overlay while strata parses, prepares
/// and clones (`process::SetupHelper`).
///
/// The task shares the creator's memory and fd table (clone3 with CLONE_VM and CLONE_FILES), so an fd
/// a call makes is the creator's, and is made and run by one block of machine code: the clone3, then in
/// the task each call of its [`Program`] and exit, all raw system calls. It touches no memory but the
/// program's steps (reading each call, writing its result): no stack, heap or thread-local state, not
/// even errno — unlike a thread, it cannot disturb its creator, and unlike a fork it copies nothing.
/// It is still given a small stack of its own, as clone3 requires. Without CLONE_FS it has its own copy
/// of the creator's working directory, taken at clone time. [`SyscallTask::wait`] reaps it and returns
/// what its calls made; dropping the handle unwaited also reaps it (before the steps and its stack are
/// freed) and closes what they made.
pub struct SyscallTask {
    pid: Pid,
    // The task reads and writes these and its stack pointer points into `_stack` until it exits; both
    // are freed only after the reap.
    steps: Box<[Step]>,
    /// Which steps make an fd ([`Program::makes_fd`]).
    makes_fd: Vec<bool>,
    _stack: Box<[u8]>,
    _data: Vec<Box<[u8]>>,
    reaped: bool,
}

/// One call of a [`Program`], as the task's machine code reads it (offsets fixed by `repr(C)`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Step {
    nr: u64,
    args: [u64; 6],
    /// Non-zero: the first argument is the result of the last earlier step marked `keep`.
    arg0_kept: u64,
    /// Non-zero: later `arg0_kept` steps take this step's result (an fd it made).
    keep: u64,
    /// The call's return value (-errno on failure), written by the task.
    result: i64,
}

/// Not run (the task stopped at an earlier failure).
const NOT_RUN: i64 = i64::MIN;

/// The calls a [`SyscallTask`] makes, in order; it stops at the first that fails. Strings and buffers
/// they point to are kept by the program until the task is reaped.
#[derive(Default)]
pub struct Program {
    steps: Vec<Step>,
    makes_fd: Vec<bool>,
    data: Vec<Box<[u8]>>,
}

impl Program {
    /// Adds the call `nr` with `args` (the rest zero).
    pub fn call(&mut self, nr: libc::c_long, args: &[u64]) -> &mut Self {
        self.push(nr, args, false)
    }

    /// Adds the call `nr` whose first argument is the fd made by the last step marked [`Program::keep`],
    /// followed by `rest`.
    pub fn call_on_kept(&mut self, nr: libc::c_long, rest: &[u64]) -> &mut Self {
        let mut args = vec![0];
        args.extend_from_slice(rest);
        self.push(nr, &args, true)
    }

    /// Arguments past the sixth (no system call has more) are ignored.
    fn push(&mut self, nr: libc::c_long, args: &[u64], arg0_kept: bool) -> &mut Self {
        let mut a = [0u64; 6];
        for (slot, arg) in a.iter_mut().zip(args) {
            *slot = *arg;
        }
        self.steps.push(Step {
            nr: nr as u64,
            args: a,
            arg0_kept: u64::from(arg0_kept),
            keep: 0,
            result: NOT_RUN,
        });
        self.makes_fd.push(false);
        self
    }

    /// The last call makes an fd: it is the creator's once the task is reaped ([`Made`]).
    pub fn makes_fd(&mut self) -> &mut Self {
        if let Some(m) = self.makes_fd.last_mut() {
            *m = true;
        }
        self
    }

    /// The fd the last call makes is the first argument of later [`Program::call_on_kept`] calls.
    pub fn keep(&mut self) -> &mut Self {
        if let Some(s) = self.steps.last_mut() {
            s.keep = 1;
        }
        self
    }

    /// A NUL-terminated copy of `s` the program keeps; its address, for a call's argument.
    pub fn c_str(&mut self, s: &str) -> io::Result<u64> {
        Ok(self.bytes(super::c_string(s)?.into_bytes_with_nul()))
    }

    /// A buffer the program keeps (and the task may write); its address, for a call's argument.
    pub fn bytes(&mut self, b: Vec<u8>) -> u64 {
        let mut b = b.into_boxed_slice();
        let at = b.as_mut_ptr() as u64;
        self.data.push(b);
        at
    }
}

/// What a reaped task's calls made: the fd of each call marked [`Program::makes_fd`] that succeeded,
/// in order; those not taken are closed when this is dropped.
#[derive(Debug)]
pub struct Made {
    fds: Vec<Option<OwnedFd>>,
}

impl Made {
    /// The fd made by the `n`-th call marked `makes_fd` (0 first).
    pub fn take(&mut self, n: usize) -> Option<OwnedFd> {
        self.fds.get_mut(n).and_then(Option::take)
    }
}

/// The pid a task started by the init of a pid namespace takes there: one the container's own processes
/// do not reach, so its first fork still gets pid 2 (as under runc) and a built-in init's command too.
const SPARE_PID: libc::pid_t = 32767;

impl SyscallTask {
    /// Starts a task running `program`, with pid `tid` in the caller's pid namespace when given. None
    /// where this architecture has no machine code for it here.
    pub fn spawn(program: Program, tid: Option<libc::pid_t>) -> Option<io::Result<SyscallTask>> {
        #[cfg(target_arch = "x86_64")]
        {
            const STACK: usize = 4096;
            let stack = vec![0u8; STACK].into_boxed_slice();
            let mut steps = program.steps.into_boxed_slice();
            let set_tid = [tid.unwrap_or(0)];
            let args = super::CloneArgs {
                flags: (libc::CLONE_VM | libc::CLONE_FILES) as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: stack.as_ptr() as u64,
                stack_size: STACK as u64,
                set_tid: if tid.is_some() {
                    set_tid.as_ptr() as u64
                } else {
                    0
                },
                set_tid_size: u64::from(tid.is_some()),
                ..super::CloneArgs::default()
            };
            let rc: isize;
            // SAFETY: clone3 with a valid clone_args (and set_tid array) of the size passed; the kernel
            // copies both before returning. The new task (rax 0) uses registers and the steps only: for
            // each of the r13 steps at r12 (kept by `syscall`, inherited by the task) it loads the call's
            // number and arguments (the first from r15, the last kept result, when asked), makes it and
            // stores its return value; it exits with the errno of the first that fails, else 0, and never
            // reaches Rust code. The steps stay allocated, unmoved and untouched by us until the task is
            // reaped (`wait`, or `Drop`), which also orders its writes before our reads. The parent
            // continues after label 9 with the task's pid or -errno. `syscall` clobbers rcx and r11.
            unsafe {
                std::arch::asm!(
                    "syscall",
                    "test rax, rax",
                    "jnz 9f",
                    "2:",
                    "test r13, r13",
                    "jz 5f",
                    "mov rax, [r12]",
                    "mov rdi, [r12 + 8]",
                    "mov rsi, [r12 + 16]",
                    "mov rdx, [r12 + 24]",
                    "mov r10, [r12 + 32]",
                    "mov r8, [r12 + 40]",
                    "mov r9, [r12 + 48]",
                    "cmp qword ptr [r12 + 56], 0",
                    "je 3f",
                    "mov rdi, r15",
                    "3:",
                    "syscall",
                    "mov [r12 + 72], rax",
                    "cmp rax, -4095",
                    "jae 6f",
                    "cmp qword ptr [r12 + 64], 0",
                    "je 4f",
                    "mov r15, rax",
                    "4:",
                    "add r12, 80",
                    "dec r13",
                    "jmp 2b",
                    "5:",
                    "xor edi, edi",
                    "mov eax, 60",
                    "syscall",
                    "6:",
                    "mov rdi, rax",
                    "neg rdi",
                    "mov eax, 60",
                    "syscall",
                    "ud2",
                    "9:",
                    inlateout("rax") libc::SYS_clone3 as isize => rc,
                    in("rdi") &args as *const super::CloneArgs,
                    in("rsi") std::mem::size_of::<super::CloneArgs>(),
                    in("r12") steps.as_mut_ptr(),
                    in("r13") steps.len(),
                    lateout("rcx") _,
                    lateout("r11") _,
                    lateout("r15") _,
                    options(nostack)
                );
            }
            if rc < 0 {
                return Some(Err(io::Error::from_raw_os_error(-rc as i32)));
            }
            Some(Ok(SyscallTask {
                pid: Pid::from_raw(rc as libc::pid_t),
                steps,
                makes_fd: program.makes_fd,
                _stack: stack,
                _data: program.data,
                reaped: false,
            }))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (program, tid);
            None
        }
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Reaps the task: what its calls made once all succeeded, else the first failure's error (what
    /// the calls before it made is closed).
    pub fn wait(mut self) -> io::Result<Made> {
        let status = self.reap();
        let made = self.made();
        match status.map_err(io::Error::from)? {
            nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(made),
            nix::sys::wait::WaitStatus::Exited(_, errno) => {
                Err(io::Error::from_raw_os_error(errno))
            }
            other => Err(io::Error::other(format!("the task ended: {other:?}"))),
        }
    }

    /// Waits for the task's exit. Only then may its steps be read or freed: an error other than EINTR
    /// (retried) means it was reaped elsewhere, so it has exited too.
    fn reap(&mut self) -> nix::Result<nix::sys::wait::WaitStatus> {
        self.reaped = true;
        loop {
            match nix::sys::wait::waitpid(self.pid, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r,
            }
        }
    }

    /// The fds the reaped task's calls made.
    fn made(&self) -> Made {
        let fds = self
            .steps
            .iter()
            .zip(&self.makes_fd)
            .filter(|(_, m)| **m)
            .map(|(s, _)| {
                // SAFETY: the task is reaped, so its write of the result is complete and ours to read.
                let r = unsafe { std::ptr::read_volatile(&s.result) };
                // SAFETY: a non-negative result of a call that makes an fd is a new fd in our table
                // (shared with the task), owned by nobody else.
                (0..=i64::from(i32::MAX))
                    .contains(&r)
                    .then(|| unsafe { OwnedFd::from_raw_fd(r as i32) })
            })
            .collect();
        Made { fds }
    }
}

impl Drop for SyscallTask {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.reap();
            drop(self.made());
        }
    }
}

/// A task making the one call `nr(a1, a2)`.
fn one_call(
    nr: libc::c_long,
    a1: u64,
    a2: u64,
    data: Vec<Box<[u8]>>,
    tid: Option<libc::pid_t>,
) -> Option<io::Result<SyscallTask>> {
    let mut p = Program {
        data,
        ..Program::default()
    };
    p.call(nr, &[a1, a2]);
    SyscallTask::spawn(p, tid)
}

/// A task detaching (umount2 with MNT_DETACH) the mount stacked on the caller's working directory: the
/// old root right after `pivot_root(".", ".")`. A later chdir of the caller does not change what it
/// detaches. None: the caller detaches it itself.
pub fn detach_cwd_mount_concurrently() -> Option<io::Result<SyscallTask>> {
    let init = nix::unistd::getpid().as_raw() == 1;
    one_call(
        libc::SYS_umount2,
        c".".as_ptr() as u64,
        libc::MNT_DETACH as u64,
        Vec::new(),
        init.then_some(SPARE_PID),
    )
}

/// Closes `fd` in a task of its own: the release of what it holds last (a mount namespace: every mount
/// unmounted) happens there. None when no task could be started; `fd` is then closed here.
pub fn close_concurrently(fd: OwnedFd) -> Option<SyscallTask> {
    use std::os::fd::IntoRawFd;
    let raw = fd.as_raw_fd();
    match one_call(libc::SYS_close, raw as u64, 0, Vec::new(), None) {
        Some(Ok(task)) => {
            // The task owns it now (it shares our fd table).
            let _ = fd.into_raw_fd();
            Some(task)
        }
        _ => None,
    }
}

/// A task making a new network namespace with its loopback up: [`Made::take`]`(1)` is the namespace
/// (the task's /proc/thread-self/ns/net, open, which keeps it once the task is gone).
pub fn new_netns_task() -> Option<io::Result<SyscallTask>> {
    // libc types it c_ulong for glibc and c_int for musl.
    #[allow(clippy::unnecessary_cast)]
    const SIOCSIFFLAGS: u64 = libc::SIOCSIFFLAGS as u64;
    let mut p = Program::default();
    let mut req = match super::ifreq_for("lo") {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    // What SIOCGIFFLAGS with IFF_UP added gives for a new namespace's loopback (the task cannot compute
    // it): the kernel makes it with IFF_LOOPBACK alone, and SIOCSIFFLAGS changes only IFF_UP of the
    // rest (and a few flags loopback never has).
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK) as libc::c_short;
    // SAFETY: ifreq is plain old data; the bytes are copied while `req` lives.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw const req).cast::<u8>(),
            std::mem::size_of::<libc::ifreq>(),
        )
    }
    .to_vec();
    let req_at = p.bytes(bytes);
    let path = match p.c_str("/proc/thread-self/ns/net") {
        Ok(a) => a,
        Err(e) => return Some(Err(e)),
    };
    p.call(libc::SYS_unshare, &[libc::CLONE_NEWNET as u64])
        .call(
            libc::SYS_socket,
            &[
                libc::AF_INET as u64,
                (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as u64,
            ],
        )
        .makes_fd()
        .keep()
        .call_on_kept(libc::SYS_ioctl, &[SIOCSIFFLAGS, req_at])
        .call(
            libc::SYS_open,
            &[path, (libc::O_RDONLY | libc::O_CLOEXEC) as u64],
        )
        .makes_fd();
    SyscallTask::spawn(p, None)
}

/// A task mounting a filesystem detached, as [`super::fsmount_detached`] does: [`Made::take`]`(1)` is
/// the mount.
pub fn fsmount_task(
    fstype: &str,
    source: &str,
    params: &[(&str, Option<&str>)],
    flags: nix::mount::MsFlags,
) -> Option<io::Result<SyscallTask>> {
    let program = || -> io::Result<Program> {
        let mut p = Program::default();
        let fstype = p.c_str(fstype)?;
        p.call(
            libc::SYS_fsopen,
            &[fstype, u64::from(super::FSOPEN_CLOEXEC)],
        )
        .makes_fd()
        .keep();
        for (k, v) in super::fsconfig_settings(source, params)? {
            let (cmd, _, _) = super::Fsconfig::set(&k, v.as_deref()).raw();
            let key = p.bytes(k.into_bytes_with_nul());
            let value = v.map_or(0, |v| p.bytes(v.into_bytes_with_nul()));
            p.call_on_kept(libc::SYS_fsconfig, &[u64::from(cmd), key, value, 0]);
        }
        let (create, _, _) = super::Fsconfig::Create.raw();
        p.call_on_kept(libc::SYS_fsconfig, &[u64::from(create), 0, 0, 0])
            .call_on_kept(
                libc::SYS_fsmount,
                &[u64::from(super::FSMOUNT_CLOEXEC), super::mount_attrs(flags)],
            )
            .makes_fd();
        Ok(p)
    };
    match program() {
        Ok(p) => SyscallTask::spawn(p, None),
        Err(e) => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::in_private_mount_ns;
    use nix::mount::{MsFlags, mount};

    fn tmpfs_with_marker(at: &std::path::Path, marker: &str) {
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::write(at.join(marker), marker).unwrap();
    }

    #[test]
    fn the_detach_task_removes_the_mount_stacked_on_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_path_buf();
        let (before, after) = in_private_mount_ns(move || {
            // As after pivot_root(".", "."): the working directory is one mount, another is stacked
            // on top of it.
            tmpfs_with_marker(&at, "below");
            nix::unistd::chdir(&at).unwrap();
            tmpfs_with_marker(&at, "above");
            let before = at.join("above").exists();
            let task = super::detach_cwd_mount_concurrently()
                .expect("a raw syscall path on this architecture")
                .unwrap();
            // The caller moving elsewhere meanwhile does not change what the task detaches.
            nix::unistd::chdir("/").unwrap();
            task.wait().unwrap();
            let after = (at.join("above").exists(), at.join("below").exists());
            nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH).unwrap();
            (before, after)
        });
        assert!(before, "the upper mount is seen before the detach");
        assert_eq!(after, (false, true), "only the upper mount is gone");
    }

    #[test]
    fn the_detach_task_reports_the_kernels_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_path_buf();
        let err = in_private_mount_ns(move || {
            // Nothing is mounted on a plain directory: umount2 refuses with EINVAL.
            nix::unistd::chdir(&at).unwrap();
            let task = super::detach_cwd_mount_concurrently()
                .expect("a raw syscall path on this architecture")
                .unwrap();
            let r = task.wait();
            nix::unistd::chdir("/").unwrap();
            r
        })
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn closing_the_last_hold_of_a_mount_namespace_unmounts_it_in_the_task() {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_path_buf();
        // A namespace whose only process (the thread) is gone, held by an fd alone.
        let (inotify, ns) = in_private_mount_ns(move || {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
            tmpfs_with_marker(&at, "mounted");
            // IN_UNMOUNT comes when the tmpfs's superblock goes, i.e. when the namespace is released.
            inotify
                .add_watch(&at, AddWatchFlags::IN_ALL_EVENTS)
                .unwrap();
            let ns = std::fs::File::open("/proc/thread-self/ns/mnt").unwrap();
            (inotify, std::os::fd::OwnedFd::from(ns))
        });
        let unmounted = |i: &Inotify| {
            i.read_events()
                .unwrap_or_default()
                .iter()
                .any(|e| e.mask.contains(AddWatchFlags::IN_UNMOUNT))
        };
        assert!(!unmounted(&inotify), "held: still mounted");
        let task = super::close_concurrently(ns).expect("a task to close it");
        task.wait().unwrap();
        assert!(
            unmounted(&inotify),
            "released: unmounted by the time the task is reaped"
        );
    }

    /// A memfd named `name` the task makes, keeps, and writes `text` to through its kept fd.
    fn write_to_a_memfd(p: &mut super::Program, name: &str, text: &str) {
        let name = p.c_str(name).unwrap();
        let buf = p.bytes(text.as_bytes().to_vec());
        p.call(libc::SYS_memfd_create, &[name, libc::MFD_CLOEXEC as u64])
            .makes_fd()
            .keep()
            .call_on_kept(libc::SYS_write, &[buf, text.len() as u64]);
    }

    #[test]
    fn a_program_passes_its_kept_fd_on_and_hands_over_what_it_made() {
        let mut p = super::Program::default();
        write_to_a_memfd(&mut p, "strata-task-test-made", "from the task");
        let task = super::SyscallTask::spawn(p, None)
            .expect("a raw syscall path on this architecture")
            .unwrap();
        let mut made = task.wait().unwrap();
        let fd = made.take(0).expect("the memfd");
        assert!(made.take(1).is_none(), "one call made an fd");
        let text = std::fs::read_to_string(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap();
        assert_eq!(text, "from the task");
    }

    #[test]
    fn a_program_stops_at_the_first_failure_and_what_it_made_is_closed() {
        let mut p = super::Program::default();
        write_to_a_memfd(&mut p, "strata-task-test-failed", "x");
        let path = p.c_str("/dev/null").unwrap();
        // A memfd is no terminal: TIOCGWINSZ (0x5413; libc's type differs between glibc and musl)
        // fails with ENOTTY. The open after it must not run.
        p.call_on_kept(libc::SYS_ioctl, &[0x5413, 0])
            .call(libc::SYS_open, &[path, libc::O_CLOEXEC as u64])
            .makes_fd();
        let task = super::SyscallTask::spawn(p, None)
            .expect("a raw syscall path on this architecture")
            .unwrap();
        let err = task.wait().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        // Other tests of this binary open fds concurrently: look for ours by what they are.
        let ours = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .filter(|l| l.to_string_lossy().contains("strata-task-test-failed"))
            .count();
        assert_eq!(ours, 0, "the memfd is closed");
    }
}
