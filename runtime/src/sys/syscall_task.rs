//! One system call made by a task of its own, so that what it waits for is off its creator's path.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::Pid;

/// A task that makes one system call for its creator and exits, so that what the call waits for is not
/// waited for on the creator's path: detaching the old root ([`detach_cwd_mount_concurrently`]) or
/// dropping the last reference to a mount namespace ([`close_concurrently`]), each of which waits for an
/// RCU grace period (~0.1 ms here, milliseconds when the kthread that drives it queues behind a busy
/// task) and the second also unmounts every mount of the namespace.
///
/// The task shares the creator's memory and fd table (clone3 with CLONE_VM and CLONE_FILES) and is made
/// and run by one block of machine code: the clone3, then in the task the call and exit, all raw system
/// calls, so it touches no memory at all — no stack, heap or thread-local state (not even errno). It is
/// still given a small stack of its own, as clone3 requires. Without CLONE_FS it has its own copy of the
/// creator's working directory, taken at clone time. [`SyscallTask::wait`] reaps it and returns the
/// call's result; dropping the handle unwaited also reaps it, before its stack is freed.
pub struct SyscallTask {
    pid: Pid,
    // The task's stack pointer points here until it exits; freed only after the reap.
    _stack: Box<[u8]>,
    reaped: bool,
}

/// The pid a task started by the init of a pid namespace takes there: one the container's own processes
/// do not reach, so its first fork still gets pid 2 (as under runc) and a built-in init's command too.
const SPARE_PID: libc::pid_t = 32767;

/// Starts a task making the system call `nr` with arguments `a1` and `a2` (pointers among them must stay
/// valid until it is reaped), with pid `tid` in the caller's pid namespace when given. None where this
/// architecture has no machine code for it here.
fn spawn_syscall_task(
    nr: libc::c_long,
    a1: usize,
    a2: usize,
    tid: Option<libc::pid_t>,
) -> Option<io::Result<SyscallTask>> {
    #[cfg(target_arch = "x86_64")]
    {
        const STACK: usize = 4096;
        let stack = vec![0u8; STACK].into_boxed_slice();
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
        // copies both before returning. In the new task (rax 0) only registers are used: the call's
        // number and arguments, passed in r12-r14 (kept by `syscall`, inherited by the task), then
        // exit with the call's errno (0 on success); it never reaches Rust code. The parent continues
        // after label 2 with the task's pid or -errno. `syscall` clobbers rcx and r11.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov rax, r12",
                "mov rdi, r13",
                "mov rsi, r14",
                "syscall",
                "mov rdi, rax",
                "neg rdi",
                "mov eax, 60",
                "syscall",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 as isize => rc,
                in("rdi") &args as *const super::CloneArgs,
                in("rsi") std::mem::size_of::<super::CloneArgs>(),
                in("r12") nr as usize,
                in("r13") a1,
                in("r14") a2,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        if rc < 0 {
            return Some(Err(io::Error::from_raw_os_error(-rc as i32)));
        }
        Some(Ok(SyscallTask {
            pid: Pid::from_raw(rc as libc::pid_t),
            _stack: stack,
            reaped: false,
        }))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (nr, a1, a2, tid);
        None
    }
}

/// A task detaching (umount2 with MNT_DETACH) the mount stacked on the caller's working directory: the
/// old root right after `pivot_root(".", ".")`. A later chdir of the caller does not change what it
/// detaches. None: the caller detaches it itself.
pub fn detach_cwd_mount_concurrently() -> Option<io::Result<SyscallTask>> {
    let init = nix::unistd::getpid().as_raw() == 1;
    spawn_syscall_task(
        libc::SYS_umount2,
        c".".as_ptr() as usize,
        libc::MNT_DETACH as usize,
        init.then_some(SPARE_PID),
    )
}

/// Closes `fd` in a task of its own: the release of what it holds last (a mount namespace: every mount
/// unmounted) happens there. None when no task could be started; `fd` is then closed here.
pub fn close_concurrently(fd: OwnedFd) -> Option<SyscallTask> {
    use std::os::fd::IntoRawFd;
    let raw = fd.as_raw_fd();
    match spawn_syscall_task(libc::SYS_close, raw as usize, 0, None) {
        Some(Ok(task)) => {
            // The task owns it now (it shares our fd table).
            let _ = fd.into_raw_fd();
            Some(task)
        }
        _ => None,
    }
}

impl SyscallTask {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Reaps the task: Ok once its call succeeded, else the call's error.
    pub fn wait(mut self) -> io::Result<()> {
        self.reaped = true;
        match nix::sys::wait::waitpid(self.pid, None).map_err(io::Error::from)? {
            nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
            nix::sys::wait::WaitStatus::Exited(_, errno) => {
                Err(io::Error::from_raw_os_error(errno))
            }
            other => Err(io::Error::other(format!("the task ended: {other:?}"))),
        }
    }
}

impl Drop for SyscallTask {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
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
}
