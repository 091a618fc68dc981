//! A short-lived helper process, forked first thing in `strata run`, that makes pieces of the container on
//! the idle CPU while strata parses, prepares and clones: the container's network namespace (loopback
//! up; [`super::ChildPlan::net_from_parent`]) at once, and on request its kernel overlay, mounted
//! detached, which the container process then only attaches.
//!
//! Why: the start is two lanes on two CPUs once the container process exists (it mounts its rootfs,
//! strata makes the cgroup), but before the clone nothing ran beside strata. Making a network namespace
//! costs ~0.45 ms of kernel time (each protocol registers its sysctls and devices); it sat on strata's
//! lane. Mounting the overlay (~0.15 ms: overlayfs checks its upper and work dirs) sat on the container
//! process's lane, the longer one once the namespace moved here.
//!
//! Why a process: a thread would share strata's address space, which then has been used on both CPUs:
//! the clone and every later copy-on-write fault pay cross-CPU TLB flushes (+0.19 ms measured). Forked
//! in `prepare`, it gained nothing: the grown heap made the fork and the copy-on-write faults after it
//! cost what it saved. Forked before argument parsing, strata's address space is smallest.
//!
//! Both pieces stay out of the host's mount table and network: the namespace is reachable only through
//! its fd, the overlay is attached nowhere until the container process moves it into its own mount
//! namespace.

use std::os::fd::OwnedFd;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::ProcessError;
use super::sync::{self, Channel, Msg};
use crate::network::NetworkError;

/// The helper process and what it has sent so far. When dropped, it is killed (if it still runs) and
/// reaped; it exits by itself once strata has what it asked for.
pub struct SetupHelper {
    pid: Option<Pid>,
    /// Closed once strata needs nothing more: the helper sees end-of-file and exits.
    chan: Option<Channel>,
    netns: Option<Result<OwnedFd, String>>,
    overlay: Option<Result<OwnedFd, String>>,
    overlay_asked: bool,
    netns_taken: bool,
}

impl SetupHelper {
    /// Forks the helper, which makes the network namespace at once. Must be called while strata is
    /// single-threaded (as every fork).
    pub fn start() -> Result<Self, ProcessError> {
        let (ours, theirs) = sync::pair().map_err(ProcessError::Socket)?;
        let ours_raw = ours.raw();
        let pid = crate::sys::fork_run(|| {
            // Our copy of strata's end would keep our own reads from ever seeing end-of-file.
            let _ = nix::unistd::close(ours_raw);
            helper_main(&theirs)
        })
        .map_err(|e| ProcessError::NetNs(NetworkError::NewNetns(e)))?;
        // A new task is queued on its parent's CPU (see super::OtherCpu), where strata goes on working:
        // the helper would wait for it instead of using the idle one.
        super::run_beside(pid);
        // strata keeps only its end: the helper's exit without a message then reads as end-of-file.
        drop(theirs);
        Ok(SetupHelper {
            pid: Some(pid),
            chan: Some(ours),
            netns: None,
            overlay: None,
            overlay_asked: false,
            netns_taken: false,
        })
    }

    /// Asks for a kernel overlay with these mount options, mounted detached ([`SetupHelper::take_overlay`]).
    pub fn ask_overlay(&mut self, options: &str) -> Result<(), ProcessError> {
        let chan = self.chan.as_ref().ok_or(ProcessError::ChildVanished)?;
        chan.send(&Msg::Overlay(options.to_string()))
            .map_err(ProcessError::Sync)?;
        self.overlay_asked = true;
        Ok(())
    }

    /// The network namespace (the helper has usually made it by now).
    pub fn take_netns(&mut self) -> Result<OwnedFd, ProcessError> {
        self.receive_until(|h| h.netns.is_some())?;
        self.netns_taken = true;
        let got = self.netns.take();
        self.close_when_done();
        match got {
            Some(Ok(fd)) => Ok(fd),
            Some(Err(m)) => Err(ProcessError::NetNs(NetworkError::NewNetns(
                std::io::Error::other(m),
            ))),
            None => Err(ProcessError::ChildVanished),
        }
    }

    /// The overlay asked for: `Err` with the helper's reason when it could not mount it (the container
    /// process then mounts it itself, and reports the failure in its own words if it fails too).
    pub fn take_overlay(&mut self) -> Result<OwnedFd, String> {
        if !self.overlay_asked {
            return Err("not asked for".into());
        }
        self.receive_until(|h| h.overlay.is_some())
            .map_err(|e| e.to_string())?;
        self.overlay_asked = false;
        let got = self.overlay.take();
        self.close_when_done();
        got.unwrap_or_else(|| Err("no answer".into()))
    }

    /// Reads the helper's messages, in the order it sends them (namespace, then overlay), until `done`.
    fn receive_until(&mut self, done: fn(&Self) -> bool) -> Result<(), ProcessError> {
        while !done(self) {
            let chan = self.chan.as_ref().ok_or(ProcessError::ChildVanished)?;
            let slot = if self.netns.is_none() && !self.netns_taken {
                &mut self.netns
            } else {
                &mut self.overlay
            };
            match chan.recv() {
                Ok(Some(Msg::NetNs(fd) | Msg::RootTree(fd))) => *slot = Some(Ok(fd)),
                Ok(Some(Msg::Error { message, .. })) => *slot = Some(Err(message)),
                Ok(_) => {
                    return Err(ProcessError::NetNs(NetworkError::NewNetns(
                        std::io::Error::other("strata's set-up helper exited early"),
                    )));
                }
                Err(e) => return Err(ProcessError::Sync(e)),
            }
        }
        Ok(())
    }

    /// Lets the helper exit (end-of-file on its socket) once nothing more is to come from it.
    fn close_when_done(&mut self) {
        if self.netns_taken && !self.overlay_asked {
            self.chan = None;
        }
    }
}

/// The helper: the network namespace first; then the overlay, if strata asks before closing the socket.
fn helper_main(chan: &Channel) -> i32 {
    let msg = match crate::network::enter_new_netns_with_loopback() {
        Ok(fd) => Msg::NetNs(fd),
        Err(e) => Msg::Error {
            code: 125,
            message: e.to_string(),
        },
    };
    // The namespace now lives in the message; the helper's exit does not end it.
    if chan.send(&msg).is_err() {
        return 125;
    }
    // At most one overlay is asked for; the helper exits after answering, while strata still clones
    // (exiting later, it took CPU time from the container process beside it).
    let answer = match chan.recv() {
        Ok(Some(Msg::Overlay(options))) => {
            let params = overlay_params(&options);
            match crate::sys::fsmount_detached(
                c"overlay",
                "overlay",
                &params,
                nix::mount::MsFlags::empty(),
            ) {
                Ok(fd) => Msg::RootTree(fd),
                Err(e) => Msg::Error {
                    code: 125,
                    message: format!("mounting the overlay: {e}"),
                },
            }
        }
        // End-of-file: strata needs nothing more.
        _ => return 0,
    };
    match chan.send(&answer) {
        Ok(()) => 0,
        Err(_) => 125,
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

impl Drop for SetupHelper {
    fn drop(&mut self) {
        self.chan = None;
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

    fn needs_root() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test needs root (it makes a network namespace and mounts)");
        }
    }

    fn inode(path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    fn gone(pid: Pid) -> bool {
        waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) == Err(nix::errno::Errno::ECHILD)
    }

    #[test]
    fn the_helper_hands_over_a_new_netns_with_loopback_up_and_is_reaped() {
        // It forks the helper.
        crate::test_support::in_own_process(
            module_path!(),
            "the_helper_hands_over_a_new_netns_with_loopback_up_and_is_reaped",
            || {
                needs_root();
                let mut helper = SetupHelper::start().unwrap();
                let pid = helper.pid.unwrap();
                let fd = helper.take_netns().unwrap();
                drop(helper);
                let made = inode(&format!("/proc/self/fd/{}", fd.as_raw_fd()));
                assert_ne!(made, inode("/proc/self/ns/net"), "a new namespace");
                assert!(gone(pid), "reaped");
                // lo is up in it: look from a thread that enters it.
                let up = std::thread::spawn(move || {
                    nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    crate::network::interface_is_up("lo").unwrap()
                })
                .join()
                .unwrap();
                assert!(up, "loopback up in the helper's namespace");
            },
        );
    }

    #[test]
    fn the_helper_mounts_an_overlay_detached_that_shows_the_layers() {
        // It forks the helper.
        crate::test_support::in_own_process(
            module_path!(),
            "the_helper_mounts_an_overlay_detached_that_shows_the_layers",
            || {
                needs_root();
                let dir = tempfile::tempdir().unwrap();
                let [lower, bottom, upper, work] = ["lower", "bottom", "upper", "work"].map(|d| {
                    let p = dir.path().join(d);
                    std::fs::create_dir(&p).unwrap();
                    p
                });
                std::fs::write(lower.join("from-lower"), "layer").unwrap();
                // Both layers have `shadowed`: the top one (first in lowerdir) wins.
                std::fs::write(lower.join("shadowed"), "top").unwrap();
                std::fs::write(bottom.join("shadowed"), "bottom").unwrap();
                std::fs::write(bottom.join("from-bottom"), "deep").unwrap();
                let mut helper = SetupHelper::start().unwrap();
                let pid = helper.pid.unwrap();
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
                // Nothing more is asked: the helper exits by itself.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                assert!(
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .unwrap()
                        .contains(") Z "),
                    "the helper exits once strata has what it asked for"
                );
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
        // It forks the helper.
        crate::test_support::in_own_process(
            module_path!(),
            "an_overlay_the_kernel_refuses_comes_back_as_the_reason",
            || {
                needs_root();
                let mut helper = SetupHelper::start().unwrap();
                helper
                .ask_overlay(
                    "lowerdir=/nonexistent-strata-layer,upperdir=/nonexistent-u,workdir=/nonexistent-w",
                )
                .unwrap();
                let err = helper.take_overlay().unwrap_err();
                assert!(err.contains("mounting the overlay"), "{err}");
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
    fn a_helper_dropped_unused_is_killed_and_reaped() {
        // It forks the helper.
        crate::test_support::in_own_process(
            module_path!(),
            "a_helper_dropped_unused_is_killed_and_reaped",
            || {
                needs_root();
                let helper = SetupHelper::start().unwrap();
                let pid = helper.pid.unwrap();
                drop(helper);
                assert!(gone(pid));
            },
        );
    }
}
