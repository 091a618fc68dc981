//! The spec's hooks (createRuntime, createContainer, startContainer, poststart, poststop): each is run
//! with its path, args (args[0] is argv[0]) and env only, the state JSON on stdin, and its timeout; a hook
//! that fails or times out fails the phase (poststart and poststop failures are only reported by callers).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{phase} hook {path}: {err}")]
    Spawn {
        phase: String,
        path: String,
        err: std::io::Error,
    },
    #[error("{phase} hook {path} failed: {status}")]
    Failed {
        phase: String,
        path: String,
        status: std::process::ExitStatus,
    },
    #[error("{phase} hook {path} timed out after {secs}s")]
    Timeout {
        phase: String,
        path: String,
        secs: i64,
    },
}

/// Runs `hooks` one after another (the spec's order); stops at the first failure.
pub fn run_all(phase: &str, hooks: &[Hook], state: &[u8]) -> Result<(), HookError> {
    for h in hooks {
        run_one(phase, h, state)?;
    }
    Ok(())
}

fn run_one(phase: &str, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let spawn_err = |err| HookError::Spawn {
        phase: phase.to_string(),
        path: path.clone(),
        err,
    };
    let mut cmd = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for e in hook.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
    let status = loop {
        match child.try_wait().map_err(spawn_err)? {
            Some(s) => break s,
            None => {
                if let Some((secs, at)) = deadline {
                    if Instant::now() >= at {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(HookError::Timeout {
                            phase: phase.to_string(),
                            path,
                            secs,
                        });
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    };
    if !status.success() {
        return Err(HookError::Failed {
            phase: phase.to_string(),
            path,
            status,
        });
    }
    Ok(())
}
