//! Waiting for the container while forwarding the signals a user sends to strata.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How the container's pid 1 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention strata exits with: the exit code, or 128+N for signal N.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Signals strata forwards to the container.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks SIGCHLD and the forwarded signals and reads them from a signalfd. Install it before cloning so a
/// signal arriving during setup is queued, not lost (the child restores its mask before exec).
pub struct SignalForwarder {
    sfd: SignalFd,
}

impl SignalForwarder {
    /// Reads one signal (blocking) and acts on it: SIGCHLD only wakes the caller, SIGWINCH resizes the
    /// relayed terminal (it concerns the caller's terminal, not the container), any other is forwarded.
    fn take_signal(&mut self, pid: Pid, relay: Option<&super::tty::Relay>) -> Result<(), Errno> {
        match self.sfd.read_signal() {
            Ok(Some(info)) => match info.ssi_signo as i32 {
                libc::SIGCHLD => {}
                libc::SIGWINCH => {
                    if let Some(r) = relay {
                        r.resize();
                    }
                }
                signo => {
                    if let Ok(sig) = Signal::try_from(signo) {
                        let _ = kill(pid, sig);
                    }
                }
            },
            Ok(None) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    pub fn install() -> Result<SignalForwarder, Errno> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        // Read, never forwarded: it is the caller's terminal that changed size (see `wait_relaying`).
        set.add(Signal::SIGWINCH);
        for s in FORWARDED {
            set.add(s);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?;
        Ok(SignalForwarder { sfd })
    }

    /// [`wait`](Self::wait) while relaying the process's terminal (`-t`), when there is one: strata's
    /// stdin to the pty, the pty to strata's stdout, and the caller's window size on each SIGWINCH.
    pub fn wait_relaying(
        &mut self,
        pid: Pid,
        relay: Option<&mut super::tty::Relay>,
    ) -> Result<ExitStatus, Errno> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let Some(relay) = relay else {
            return self.wait(pid);
        };
        use std::os::fd::AsFd;
        let mut output_open = true;
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => {
                    relay.drain();
                    return Ok(ExitStatus::Exited(c));
                }
                Ok(WaitStatus::Signaled(_, s, _)) => {
                    relay.drain();
                    return Ok(ExitStatus::Signaled(s as i32));
                }
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
            let stdin = std::io::stdin();
            let (signals, input, output) = {
                let mut fds = vec![PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
                if relay.stdin_open {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
                if output_open {
                    fds.push(PollFd::new(relay.master(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                let mut it = fds.iter();
                let signals = it.next().is_some_and(ready);
                let input = relay.stdin_open && it.next().is_some_and(ready);
                let output = output_open && it.next().is_some_and(ready);
                (signals, input, output)
            };
            if input {
                relay.pump_stdin();
            }
            if output && !relay.pump_output() {
                output_open = false;
            }
            if signals {
                self.take_signal(pid, Some(relay))?;
            }
        }
    }

    /// Waits for `pid` to end, forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it meanwhile.
    pub fn wait(&mut self, pid: Pid) -> Result<ExitStatus, Errno> {
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => return Ok(ExitStatus::Exited(c)),
                Ok(WaitStatus::Signaled(_, s, _)) => return Ok(ExitStatus::Signaled(s as i32)),
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
            self.take_signal(pid, None)?;
        }
    }
}
