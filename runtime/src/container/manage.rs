//! `ps`, `kill`, `rm` and `gc`: working on containers through their state directories.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill as send_signal};
use nix::unistd::Pid;
use serde::Serialize;

use super::ContainerError;
use crate::state::{self, State, StateRoot, Status};

#[cfg(test)]
mod tests {
    #[test]
    fn gc_only_takes_directories_strata_made() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("c");
        std::fs::create_dir_all(c.join("upper")).unwrap();
        std::fs::create_dir_all(c.join("lower-0")).unwrap();
        std::fs::write(c.join("config.json"), "{}").unwrap();
        assert!(super::looks_like_a_container_dir(&c));
        std::fs::write(c.join("leases"), "").unwrap();
        assert!(!super::looks_like_a_container_dir(&c));
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PsEntry {
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub image: Option<String>,
    pub fs: String,
    pub created: String,
    pub command: Vec<String>,
    pub exit_code: Option<i32>,
}

/// Running containers, or all of them with `all`.
pub fn ps(root: &StateRoot, all: bool) -> Result<Vec<PsEntry>, ContainerError> {
    let mut out = Vec::new();
    for (_, st) in root.list()? {
        let Some(st) = st else { continue };
        let status = st.live_status();
        if !all && status != Status::Running {
            continue;
        }
        out.push(PsEntry {
            id: st.id.clone(),
            pid: if status == Status::Running { st.pid } else { 0 },
            status,
            image: st.image.clone(),
            fs: st.fs.clone(),
            created: state::rfc3339(st.created_unix),
            command: st.command.clone(),
            exit_code: st.exit_code,
        });
    }
    Ok(out)
}

/// Parses a signal as `kill` accepts it: `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<Signal, ContainerError> {
    let bad = || ContainerError::Usage(format!("unknown signal '{s}'"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

/// Sends `sig` to the container's pid 1.
pub fn kill(root: &StateRoot, id: &str, sig: Signal) -> Result<(), ContainerError> {
    let st = root.load(id)?;
    if st.live_status() != Status::Running {
        return Err(ContainerError::NotRunning(id.to_string()));
    }
    send_signal(Pid::from_raw(st.pid), sig).map_err(|e| ContainerError::Io {
        what: format!("signalling container {id}"),
        err: e.into(),
    })
}

/// Where `rm --keep-upper` moves a container's upper layer (a name `ps` and `gc` never treat as a
/// container).
pub fn kept_upper_dir(root: &StateRoot, id: &str) -> std::path::PathBuf {
    root.path
        .join(".kept-uppers")
        .join(format!("{id}-{}", state::now_unix()))
}

/// Removes a container. A running one needs `force` (it is killed first). With `keep_upper` its
/// writable layer (kernel or fuse rootfs) is moved aside and its new path returned.
pub fn rm(
    root: &StateRoot,
    id: &str,
    force: bool,
    keep_upper: bool,
) -> Result<Option<std::path::PathBuf>, ContainerError> {
    let st = match root.load(id) {
        Ok(st) => st,
        // A directory without readable state (strata died while starting): nothing runs, remove it.
        Err(state::StateError::NotFound(_)) if root.dir(id).is_dir() => {
            root.remove(id)?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if st.live_status() == Status::Running {
        if !force {
            return Err(ContainerError::Running(id.to_string()));
        }
        let _ = send_signal(Pid::from_raw(st.pid), Signal::SIGKILL);
    }
    settle(&st);
    let mut kept = None;
    let upper = root.dir(id).join("upper");
    if keep_upper && upper.is_dir() {
        let dest = kept_upper_dir(root, id);
        let moved = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(&upper, &dest));
        moved.map_err(|err| ContainerError::Io {
            what: format!("keeping the upper layer of {id}"),
            err,
        })?;
        kept = Some(dest);
    }
    cleanup(root, &st)?;
    Ok(kept)
}

/// Removes every container whose processes are gone: its monitor died (e.g. `kill -9` of strata) or it
/// exited. Returns the ids removed.
pub fn gc(root: &StateRoot) -> Result<Vec<String>, ContainerError> {
    let mut removed = Vec::new();
    for (id, st) in root.list()? {
        match st {
            Some(st) => {
                // An OCI container has no monitor (the shim is its parent): it is gc'd only once it ends.
                let oci_alive =
                    st.bundle.is_some() && state::same_process_alive(st.pid, st.pid_start);
                if st.monitor_alive() || oci_alive {
                    continue;
                }
                if state::same_process_alive(st.pid, st.pid_start) {
                    // Its monitor is gone, so nobody serves its rootfs or will reap it: end it.
                    let _ = send_signal(Pid::from_raw(st.pid), Signal::SIGKILL);
                    settle(&st);
                }
                cleanup(root, &st)?;
            }
            None => {
                // Claimed but never written: only stale ones (a starting strata writes state at once).
                let age = std::fs::metadata(root.dir(&id))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or_default();
                if age < Duration::from_secs(30) || !looks_like_a_container_dir(&root.dir(&id)) {
                    continue;
                }
                root.remove(&id)?;
            }
        }
        removed.push(id);
    }
    Ok(removed)
}

/// True when every entry of `dir` is something strata puts in a container's directory, so gc never
/// deletes an unrelated directory that happens to live in the state root.
fn looks_like_a_container_dir(dir: &std::path::Path) -> bool {
    let known = |n: &str| {
        matches!(
            n,
            "upper" | "work" | "merged" | "log" | "config.json" | "state.json.tmp"
        ) || n
            .strip_prefix("lower-")
            .is_some_and(|i| i.parse::<u32>().is_ok())
    };
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .all(|e| known(&e.file_name().to_string_lossy()))
    })
}

/// Waits (bounded) until the container's pid 1 and its monitor are gone, so the monitor's own teardown does
/// not race ours.
fn settle(st: &State) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && (state::same_process_alive(st.pid, st.pid_start) || st.monitor_alive())
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Releases what a container holds outside its namespaces: its cgroup (any process still in it is killed
/// first), its veth and address lease, and its state directory (which holds its upper layer). Mounts and
/// the FUSE connection live in the container's own mount namespace and vanish with it.
fn cleanup(root: &StateRoot, st: &State) -> Result<(), ContainerError> {
    if let Some((parent, name)) = &st.cgroup {
        if let Ok(cg) = crate::cgroups::ContainerCgroup::open(parent, name) {
            cg.kill_all()?;
            cg.remove()?;
        }
    }
    if st.bridge {
        crate::network::Bridge::teardown_by_id(&st.id)?;
    }
    root.remove(&st.id)?;
    Ok(())
}
