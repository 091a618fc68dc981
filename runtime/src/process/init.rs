//! strata's tiny init (`--init`): stays pid 1 of the container, runs the command as its child, forwards
//! every signal it receives to the command, reaps every zombie (orphans are re-parented to pid 1), and exits
//! with the command's status (128+N when the command was killed by signal N).

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::ExecPlan;
use super::child::{Failure, exec};
use super::sync::{Channel, Msg};

pub fn run(plan: &ExecPlan, chan: &Channel) -> Result<(), Failure> {
    // Queue every signal for sigwait; the command unblocks them again right before its exec.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None).map_err(|e| Failure {
        code: 125,
        message: format!("init: blocking signals: {e}"),
    })?;
    let child = crate::sys::fork_run(|| {
        let f = exec(plan);
        let _ = chan.send(&Msg::Error {
            code: f.code,
            message: f.message,
        });
        i32::from(f.code)
    })
    .map_err(|e| Failure {
        code: 125,
        message: format!("init: fork: {e}"),
    })?;
    // Only the command's copy of the sync socket may remain, so its exec is what the parent sees.
    let _ = nix::unistd::close(chan.raw());

    let all = SigSet::all();
    loop {
        let Ok(sig) = all.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => crate::sys::exit_now(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                    crate::sys::exit_now(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
