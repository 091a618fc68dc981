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
    pub fn install() -> Result<SignalForwarder, Errno> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        // Read, never forwarded: it is the caller's terminal that changed size (see `wait_with`).
        set.add(Signal::SIGWINCH);
        for s in FORWARDED {
            set.add(s);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?;
        Ok(SignalForwarder { sfd })
    }

    /// Waits for `pid` to end, forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it meanwhile.
    pub fn wait(&mut self, pid: Pid) -> Result<ExitStatus, Errno> {
        self.wait_with(pid, &mut || {})
    }

    /// [`wait`](Self::wait), calling `on_winch` on each SIGWINCH (`run -t` passes the new size on).
    pub fn wait_with(&mut self, pid: Pid, on_winch: &mut dyn FnMut()) -> Result<ExitStatus, Errno> {
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => return Ok(ExitStatus::Exited(c)),
                Ok(WaitStatus::Signaled(_, s, _)) => return Ok(ExitStatus::Signaled(s as i32)),
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
            match self.sfd.read_signal() {
                Ok(Some(info)) => {
                    let signo = info.ssi_signo as i32;
                    if signo == libc::SIGWINCH {
                        on_winch();
                    } else if signo != libc::SIGCHLD {
                        if let Ok(sig) = Signal::try_from(signo) {
                            let _ = kill(pid, sig);
                        }
                    }
                }
                Ok(None) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
