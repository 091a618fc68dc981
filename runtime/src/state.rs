//! Container state: `/run/strata/<id>/state.json` (root overridable with `--state-dir` / `STRATA_STATE`),
//! written atomically (temp file + rename). The directory itself is the name claim: `mkdir` is atomic, so
//! of two strata processes racing on one name exactly one wins.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the container name \"{0}\" is already in use")]
    NameInUse(String),
    #[error(
        "invalid container name \"{0}\": use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    BadName(String),
    /// runc's words: containerd takes an error with "does not exist" from `delete` or `kill` for a container
    /// already gone (and cleans up its task), any other as a failure.
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("state of container {id}: {err}")]
    Io { id: String, err: std::io::Error },
    #[error("state directory {path}: {err}")]
    Root { path: PathBuf, err: std::io::Error },
    #[error("corrupt state of container {id}: {err}")]
    Corrupt { id: String, err: serde_json::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub status: Status,
    /// Host pid of the container's pid 1, and its start time (clock ticks since boot) so a recycled pid is
    /// never mistaken for the container.
    pub pid: i32,
    pub pid_start: u64,
    /// The strata process that created and monitors the container.
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub created_unix: u64,
    pub image: Option<String>,
    /// bind | kernel | fuse
    pub fs: String,
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// (cgroup parent, cgroup name) when the container has a cgroup.
    pub cgroup: Option<(String, String)>,
    /// The container has a bridge-mode veth (torn down by id after a crash).
    #[serde(default)]
    pub bridge: bool,
    /// Remove everything when the container ends (`--rm`).
    pub auto_remove: bool,
    /// Namespaces the container created (proc names), for `exec`.
    pub namespaces: Vec<String>,
    /// The OCI bundle of a container made by `strata create` (no strata monitor: its parent is the caller).
    #[serde(default)]
    pub bundle: Option<PathBuf>,
}

/// The state root (`/run/strata` by default).
#[derive(Debug, Clone)]
pub struct StateRoot {
    pub path: PathBuf,
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128
}

/// A 12-hex-digit random id, as Docker's short ids look.
pub fn new_id() -> String {
    let mut b = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    hex::encode(b)
}

impl StateRoot {
    pub fn default_path() -> PathBuf {
        std::env::var_os("STRATA_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/strata"))
    }

    pub fn new(path: impl Into<PathBuf>) -> StateRoot {
        StateRoot { path: path.into() }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Claims `id` by creating its directory (mode 0700). Fails with [`StateError::NameInUse`] when it exists.
    pub fn claim(&self, id: &str) -> Result<PathBuf, StateError> {
        if !valid_name(id) {
            return Err(StateError::BadName(id.to_string()));
        }
        let dir = self.dir(id);
        let mkdir = || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir)
        };
        match mkdir() {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StateError::NameInUse(id.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.path).map_err(|err| StateError::Root {
                    path: self.path.clone(),
                    err,
                })?;
                match mkdir() {
                    Ok(()) => Ok(dir),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Err(StateError::NameInUse(id.to_string()))
                    }
                    Err(err) => Err(StateError::Io {
                        id: id.to_string(),
                        err,
                    }),
                }
            }
            Err(err) => Err(StateError::Io {
                id: id.to_string(),
                err,
            }),
        }
    }

    /// Writes state.json atomically.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let io = |err| StateError::Io {
            id: state.id.clone(),
            err,
        };
        let dir = self.dir(&state.id);
        let tmp = dir.join("state.json.tmp");
        let json = serde_json::to_vec(state).map_err(|err| StateError::Corrupt {
            id: state.id.clone(),
            err,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, dir.join("state.json")).map_err(io)
    }

    pub fn load(&self, id: &str) -> Result<State, StateError> {
        if !valid_name(id) {
            return Err(StateError::NotFound(id.to_string()));
        }
        let bytes = match std::fs::read(self.dir(id).join("state.json")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()));
            }
            Err(err) => {
                return Err(StateError::Io {
                    id: id.to_string(),
                    err,
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|err| StateError::Corrupt {
            id: id.to_string(),
            err,
        })
    }

    /// Every container directory: its id and state (None when state.json is missing or unreadable, e.g. a
    /// strata killed between claiming the name and writing the state).
    pub fn list(&self) -> Result<Vec<(String, Option<State>)>, StateError> {
        let rd = match std::fs::read_dir(&self.path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(StateError::Root {
                    path: self.path.clone(),
                    err,
                });
            }
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) || !valid_name(&id) {
                continue;
            }
            out.push((id.clone(), self.load(&id).ok()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Deletes the container's directory (state, upper layer, logs).
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        match std::fs::remove_dir_all(self.dir(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(StateError::Io {
                id: id.to_string(),
                err,
            }),
        }
    }
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), None when it is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// True when `pid` is alive and is the same process that started at `start`.
pub fn same_process_alive(pid: i32, start: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start) && !is_zombie(pid)
}

/// Waits up to `timeout` until the process `pid` that started at `start` has exited (a zombie counts);
/// true once it has (or was gone already).
pub fn wait_process_gone(pid: i32, start: u64, timeout: std::time::Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let Ok(pidfd) = crate::sys::pidfd_open(nix::unistd::Pid::from_raw(pid)) else {
        return true;
    };
    // The pid may have been reused between our caller's look and the open: the start time tells.
    if !same_process_alive(pid, start) {
        return true;
    }
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&pidfd),
        PollFlags::POLLIN,
    )];
    // A pidfd is readable once its process has exited.
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

impl State {
    /// The status as it is now: a recorded Running/Created container whose pid 1 is gone is Exited.
    pub fn live_status(&self) -> Status {
        match self.status {
            Status::Running | Status::Created if !same_process_alive(self.pid, self.pid_start) => {
                Status::Exited
            }
            s => s,
        }
    }

    pub fn monitor_alive(&self) -> bool {
        same_process_alive(self.monitor_pid, self.monitor_start)
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC for `ps` (no date crate for one format).
pub fn rfc3339(unix: u64) -> String {
    let (days, secs) = ((unix / 86400) as i64, unix % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("nested"));
        root.claim("a").unwrap();
        assert!(matches!(root.claim("a"), Err(StateError::NameInUse(_))));
        assert!(matches!(root.claim("../x"), Err(StateError::BadName(_))));
        assert!(matches!(root.load("a"), Err(StateError::NotFound(_))));
        assert_eq!(root.list().unwrap().len(), 1);
        root.remove("a").unwrap();
        assert!(root.list().unwrap().is_empty());
    }

    #[test]
    fn racing_claims_have_one_winner() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path());
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| root.claim("race").is_ok()))
                .collect();
            hs.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn own_process_is_alive_and_dates_format() {
        let me = std::process::id() as i32;
        let start = process_start_time(me).unwrap();
        assert!(same_process_alive(me, start));
        assert!(!same_process_alive(me, start + 1));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
