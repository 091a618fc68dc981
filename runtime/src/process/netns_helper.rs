//! The container's network namespace, made by a short-lived helper process forked at the start of
//! `strata run`, so that it is ready when the container process needs it ([`super::ChildPlan::net_from_parent`]).
//!
//! Why a process: making a network namespace costs ~0.45 ms of kernel time (each protocol registers its
//! sysctls and devices). Made by strata itself after the clone, it occupied strata's lane of the start
//! (network, then the cgroup) while the other CPU mounted the rootfs; before the clone, nothing runs
//! beside strata. Forked first thing, the helper makes it on the idle CPU while strata prepares and
//! clones. A thread would share strata's address space, which then has been used on both CPUs: the clone
//! and every later copy-on-write fault pay cross-CPU TLB flushes (+0.19 ms measured); a forked process
//! does not, and strata's address space is small this early.

use std::os::fd::OwnedFd;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::ProcessError;
use super::sync::{self, Channel, Msg};
use crate::network::NetworkError;

/// A helper process making a network namespace (loopback up); [`NetnsHelper::take`] collects it. When
/// dropped, the helper is killed (if it still runs) and reaped.
pub struct NetnsHelper {
    pid: Option<Pid>,
    chan: Channel,
}

impl NetnsHelper {
    /// Forks the helper. Must be called while strata is single-threaded (as every fork).
    pub fn start() -> Result<Self, ProcessError> {
        let (ours, theirs) = sync::pair().map_err(ProcessError::Socket)?;
        let pid = crate::sys::fork_run(|| {
            let msg = match crate::network::enter_new_netns_with_loopback() {
                Ok(fd) => Msg::NetNs(fd),
                Err(e) => Msg::Error {
                    code: 125,
                    message: e.to_string(),
                },
            };
            // The namespace now lives in the message; the helper's exit does not end it.
            match theirs.send(&msg) {
                Ok(()) => 0,
                Err(_) => 125,
            }
        })
        .map_err(|e| ProcessError::NetNs(NetworkError::NewNetns(e)))?;
        // A new task is queued on its parent's CPU (see super::OtherCpu), where strata goes on working:
        // the helper would wait for it instead of using the idle one. A hint only.
        if let Some(p) = super::OtherCpu::pick() {
            let _ = nix::sched::sched_setaffinity(pid, &p.other);
        }
        // strata keeps only its end: the helper's exit without a message then reads as end-of-file.
        drop(theirs);
        Ok(NetnsHelper {
            pid: Some(pid),
            chan: ours,
        })
    }

    /// Waits for the namespace (the helper has usually made it by now). The helper exits right after
    /// sending it and is reaped when dropped: waiting here for its exit cost ~0.2 ms.
    pub fn take(&mut self) -> Result<OwnedFd, ProcessError> {
        let failed =
            |m: String| ProcessError::NetNs(NetworkError::NewNetns(std::io::Error::other(m)));
        match self.chan.recv() {
            Ok(Some(Msg::NetNs(fd))) => Ok(fd),
            Ok(Some(Msg::Error { message, .. })) => Err(failed(message)),
            Ok(_) => Err(failed("its helper process exited without it".into())),
            Err(e) => Err(ProcessError::Sync(e)),
        }
    }
}

impl Drop for NetnsHelper {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn netns_inode(path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn the_helper_hands_over_a_new_netns_with_loopback_up_and_is_reaped() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test needs root (it makes a network namespace)");
        }
        let mut helper = NetnsHelper::start().unwrap();
        let pid = helper.pid.unwrap();
        let fd = helper.take().unwrap();
        drop(helper);
        let made = netns_inode(&format!("/proc/self/fd/{}", fd.as_raw_fd()));
        assert_ne!(made, netns_inode("/proc/self/ns/net"), "a new namespace");
        // Reaped: the pid is no longer our child.
        assert_eq!(
            waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
            Err(nix::errno::Errno::ECHILD)
        );
        // lo is up in it: look from a thread that enters it.
        let up = std::thread::spawn(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            crate::network::interface_is_up("lo").unwrap()
        })
        .join()
        .unwrap();
        assert!(up, "loopback up in the helper's namespace");
    }

    #[test]
    fn a_helper_dropped_unused_is_killed_and_reaped() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test needs root (it makes a network namespace)");
        }
        let helper = NetnsHelper::start().unwrap();
        let pid = helper.pid.unwrap();
        drop(helper);
        assert_eq!(
            waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
            Err(nix::errno::Errno::ECHILD)
        );
    }
}
