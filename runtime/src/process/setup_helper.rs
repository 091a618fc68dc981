//! Pieces of the container made on the idle CPU while strata parses, prepares and clones, by tasks of
//! their own (`sys::SyscallTask`): the container's network namespace (loopback up;
//! [`super::ChildPlan::net_from_parent`]), started first thing in `strata run`, and on request its
//! kernel overlay, mounted detached, which the container process then only attaches.
//!
//! Why: the start is two lanes on two CPUs once the container process exists (it mounts its rootfs,
//! strata makes the cgroup), but before the clone nothing ran beside strata. Making a network namespace
//! costs ~0.45 ms of kernel time (each protocol registers its sysctls and devices); it sat on strata's
//! lane. Mounting the overlay (~0.15 ms: overlayfs checks its upper and work dirs) sat on the container
//! process's lane, the longer one once the namespace moved here.
//!
//! Why tasks that run a fixed list of raw system calls: they share strata's memory and fd table but
//! touch nothing of it except their list, so they cost neither a fork (a process forked for this, the
//! first design, cost strata ~0.15 ms before argument parsing, plus the copy-on-write faults after it)
//! nor what a thread costs (its stack mapping, its own allocations and thread-local state, and strata's
//! address space used on both CPUs while it runs: the clone and every later copy-on-write fault paid
//! cross-CPU TLB flushes, +0.19 ms measured). The fds they make are strata's at once.
//!
//! Both pieces stay out of the host's mount table and network: the namespace is reachable only through
//! its fd, the overlay is attached nowhere until the container process moves it into its own mount
//! namespace.

use std::os::fd::OwnedFd;

use super::ProcessError;
use crate::network::NetworkError;
use crate::sys::SyscallTask;

/// The tasks making the pieces, until each is taken. Dropped, it waits for a task still running and
/// closes what it made.
pub struct SetupHelper {
    netns: Option<SyscallTask>,
    overlay: Option<SyscallTask>,
}

fn netns_error(e: std::io::Error) -> ProcessError {
    ProcessError::NetNs(NetworkError::NewNetns(e))
}

/// The task, placed on the other CPU: a new task is queued on its parent's CPU (see super::OtherCpu),
/// where strata goes on working, and would wait for it instead of using the idle one.
fn started(task: Option<std::io::Result<SyscallTask>>) -> std::io::Result<SyscallTask> {
    let task =
        task.unwrap_or_else(|| Err(std::io::Error::other("no set-up task on this architecture")))?;
    super::run_beside(task.pid());
    Ok(task)
}

impl SetupHelper {
    /// Starts the task making the network namespace.
    pub fn start() -> Result<Self, ProcessError> {
        let netns = started(crate::sys::new_netns_task()).map_err(netns_error)?;
        Ok(SetupHelper {
            netns: Some(netns),
            overlay: None,
        })
    }

    /// Starts a task mounting a kernel overlay with these mount options, detached
    /// ([`SetupHelper::take_overlay`]).
    /// `Err` with the reason when the task cannot be started.
    pub fn ask_overlay(&mut self, options: &str) -> Result<(), String> {
        let params = overlay_params(options);
        let task = started(crate::sys::fsmount_task(
            "overlay",
            "overlay",
            &params,
            nix::mount::MsFlags::empty(),
        ))
        .map_err(|e| format!("mounting the overlay: {e}"))?;
        self.overlay = Some(task);
        Ok(())
    }

    /// The network namespace (its task has usually made it by now).
    pub fn take_netns(&mut self) -> Result<OwnedFd, ProcessError> {
        let task = self.netns.take().ok_or(ProcessError::ChildVanished)?;
        let mut made = task.wait().map_err(netns_error)?;
        made.take(1).ok_or(ProcessError::ChildVanished)
    }

    /// The overlay asked for: `Err` with the reason when it could not be mounted (the container
    /// process then mounts it itself, and reports the failure in its own words if it fails too).
    pub fn take_overlay(&mut self) -> Result<OwnedFd, String> {
        let task = self.overlay.take().ok_or("not asked for")?;
        let mut made = task
            .wait()
            .map_err(|e| format!("mounting the overlay: {e}"))?;
        made.take(1)
            .ok_or_else(|| "mounting the overlay: no mount made".into())
    }
}

/// mount(2)'s overlay options as fsconfig parameters: "k=v" and flags, in order; the colon-separated
/// `lowerdir` becomes one `lowerdir+` per layer, top first (fsconfig's `lowerdir` takes a single one).
fn overlay_params(options: &str) -> Vec<(&str, Option<&str>)> {
    let mut params = Vec::new();
    for (k, v) in crate::rootfs::data_params(options) {
        match (k, v) {
            ("lowerdir", Some(layers)) => {
                params.extend(layers.split(':').map(|l| ("lowerdir+", Some(l))));
            }
            kv => params.push(kv),
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{WaitPidFlag, waitpid};
    use std::os::fd::AsRawFd;

    /// Runs `body` as root, alone in a process of its own: the helper's tasks are children of the test
    /// process, and [`nothing_to_reap`] must see only them.
    fn alone_as_root(test: &str, body: impl FnOnce()) {
        crate::test_support::in_own_process(module_path!(), test, || {
            if !nix::unistd::Uid::effective().is_root() {
                panic!("this test needs root (it makes a network namespace and mounts)");
            }
            body()
        });
    }

    /// Directories `names` made under `root`.
    fn dirs<const N: usize>(root: &std::path::Path, names: [&str; N]) -> [std::path::PathBuf; N] {
        names.map(|d| {
            let p = root.join(d);
            std::fs::create_dir(&p).unwrap();
            p
        })
    }

    fn inode(path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    /// No task of ours is left: every one was reaped (the test runs in a process of its own).
    fn nothing_to_reap() -> bool {
        waitpid(None, Some(WaitPidFlag::WNOHANG)) == Err(nix::errno::Errno::ECHILD)
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn the_task_hands_over_a_new_netns_with_loopback_up_as_the_ioctls_bring_it_up() {
        alone_as_root(
            "the_task_hands_over_a_new_netns_with_loopback_up_as_the_ioctls_bring_it_up",
            || {
                let mut helper = SetupHelper::start().unwrap();
                let fd = helper.take_netns().unwrap();
                drop(helper);
                assert!(nothing_to_reap(), "the task is reaped");
                let made = inode(&format!("/proc/self/fd/{}", fd.as_raw_fd()));
                assert_ne!(made, inode("/proc/self/ns/net"), "a new namespace");
                // lo's flags there: look from a thread that enters it.
                let flags = std::thread::spawn(move || {
                    nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    crate::sys::interface_flags("lo").unwrap()
                })
                .join()
                .unwrap();
                assert_ne!(
                    flags & libc::IFF_UP,
                    0,
                    "loopback up in the task's namespace"
                );
                // The task sets precomputed flags; the ioctl path reads them and adds IFF_UP. Both
                // must give the same loopback.
                let reference = std::thread::spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    crate::sys::set_interface_up("lo").unwrap();
                    crate::sys::interface_flags("lo").unwrap()
                })
                .join()
                .unwrap();
                assert_eq!(flags, reference, "the flags the ioctl path gives");
            },
        );
    }

    #[test]
    fn the_helper_mounts_an_overlay_detached_that_shows_the_layers() {
        alone_as_root(
            "the_helper_mounts_an_overlay_detached_that_shows_the_layers",
            || {
                let dir = tempfile::tempdir().unwrap();
                let [lower, bottom, upper, work] =
                    dirs(dir.path(), ["lower", "bottom", "upper", "work"]);
                std::fs::write(lower.join("from-lower"), "layer").unwrap();
                // Both layers have `shadowed`: the top one (first in lowerdir) wins.
                std::fs::write(lower.join("shadowed"), "top").unwrap();
                std::fs::write(bottom.join("shadowed"), "bottom").unwrap();
                std::fs::write(bottom.join("from-bottom"), "deep").unwrap();
                let mut helper = SetupHelper::start().unwrap();
                helper
                    .ask_overlay(&format!(
                        "lowerdir={}:{},upperdir={},workdir={},volatile",
                        lower.display(),
                        bottom.display(),
                        upper.display(),
                        work.display()
                    ))
                    .unwrap();
                let tree = helper.take_overlay().unwrap();
                let _ = helper.take_netns().unwrap();
                assert!(nothing_to_reap(), "both tasks are reaped once taken");
                drop(helper);
                // Attached nowhere, yet readable through its fd: the lower layer's file, and a write lands in
                // the upper layer.
                let root = format!("/proc/self/fd/{}", tree.as_raw_fd());
                let read = |name: &str| std::fs::read_to_string(format!("{root}/{name}")).unwrap();
                assert_eq!(read("from-lower"), "layer");
                assert_eq!(read("from-bottom"), "deep");
                assert_eq!(read("shadowed"), "top");
                std::fs::write(format!("{root}/new"), "up").unwrap();
                assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "up");
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
                assert!(
                    !mountinfo.contains(&upper.display().to_string()),
                    "the overlay is not in the host's mount table"
                );
            },
        );
    }

    #[test]
    fn an_overlay_the_kernel_refuses_comes_back_as_the_reason() {
        alone_as_root(
            "an_overlay_the_kernel_refuses_comes_back_as_the_reason",
            || {
                let mut helper = SetupHelper::start().unwrap();
                helper
                .ask_overlay(
                    "lowerdir=/nonexistent-strata-layer,upperdir=/nonexistent-u,workdir=/nonexistent-w",
                )
                .unwrap();
                let err = helper.take_overlay().unwrap_err();
                assert!(err.contains("mounting the overlay"), "{err}");
                assert!(err.contains("No such file"), "the kernel's reason: {err}");
                // The namespace is still there to take.
                helper.take_netns().unwrap();
            },
        );
    }

    #[test]
    fn overlay_options_become_fsconfig_parameters_with_one_lowerdir_each() {
        assert_eq!(
            overlay_params("lowerdir=/a:/b,upperdir=/u,workdir=/w,volatile"),
            [
                ("lowerdir+", Some("/a")),
                ("lowerdir+", Some("/b")),
                ("upperdir", Some("/u")),
                ("workdir", Some("/w")),
                ("volatile", None),
            ]
        );
    }

    #[test]
    fn a_helper_dropped_unused_reaps_its_tasks_and_closes_what_they_made() {
        alone_as_root(
            "a_helper_dropped_unused_reaps_its_tasks_and_closes_what_they_made",
            || {
                let dir = tempfile::tempdir().unwrap();
                let [lower, upper, work] = dirs(dir.path(), ["lower", "upper", "work"]);
                let before = open_fds();
                let mut helper = SetupHelper::start().unwrap();
                helper
                    .ask_overlay(&format!(
                        "lowerdir={},upperdir={},workdir={}",
                        lower.display(),
                        upper.display(),
                        work.display()
                    ))
                    .unwrap();
                drop(helper);
                assert!(nothing_to_reap(), "both tasks are reaped");
                assert_eq!(
                    open_fds(),
                    before,
                    "the namespace, socket and mount fds are closed"
                );
            },
        );
    }
}
