//! The OCI commands on an existing container: start, state, kill, delete, pause/resume and ps. Status
//! comes from the recorded state plus whether the init process (pid + start time) still lives, so no
//! strata process needs to stay around after `create`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::ContainerError;
use super::oci::START_SOCKET;
use crate::cgroups::{ContainerCgroup, Resources};
use crate::oci::hooks;
use crate::state::{self, State, StateError, StateRoot, Status};

/// The runtime-spec status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciStatus {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl OciStatus {
    pub fn name(self) -> &'static str {
        match self {
            OciStatus::Creating => "creating",
            OciStatus::Created => "created",
            OciStatus::Running => "running",
            OciStatus::Paused => "paused",
            OciStatus::Stopped => "stopped",
        }
    }
}

/// A container's state as the OCI commands see it.
pub struct Current {
    pub state: State,
    pub status: OciStatus,
    pub spec: Option<Spec>,
}

fn frozen(st: &State) -> bool {
    st.cgroup
        .as_ref()
        .and_then(|(parent, name)| ContainerCgroup::open(parent, name).ok())
        .is_some_and(|cg| cg.is_frozen())
}

/// Loads `id` and works out its status now.
pub fn current(root: &StateRoot, id: &str) -> Result<Current, ContainerError> {
    let st = root.load(id)?;
    let status = match st.live_status() {
        Status::Exited => OciStatus::Stopped,
        Status::Created => OciStatus::Created,
        Status::Running if frozen(&st) => OciStatus::Paused,
        Status::Running => OciStatus::Running,
    };
    let spec = Spec::load(root.dir(id).join("config.json")).ok();
    Ok(Current {
        state: st,
        status,
        spec,
    })
}

impl Current {
    /// The runtime.md state JSON.
    pub fn json(&self) -> serde_json::Value {
        let annotations = self
            .spec
            .as_ref()
            .and_then(|s| s.annotations().clone())
            .unwrap_or_default()
            .into_iter()
            // strata's own markers (e.g. its seccomp switch) are not the bundle's annotations.
            .filter(|(k, _)| !k.starts_with("org.strata."))
            .collect();
        let pid = if self.status == OciStatus::Stopped {
            0
        } else {
            self.state.pid
        };
        let mut v = crate::oci::state_json(
            &self.state.id,
            self.status.name(),
            pid,
            self.state
                .bundle
                .as_deref()
                .unwrap_or(std::path::Path::new("")),
            &annotations,
        );
        v["rootfs"] = serde_json::json!(self.state.rootfs);
        v["created"] = serde_json::json!(state::rfc3339(self.state.created_unix));
        v
    }

    fn hooks(&self) -> oci_spec::runtime::Hooks {
        self.spec
            .as_ref()
            .and_then(|s| s.hooks().clone())
            .unwrap_or_default()
    }
}

/// `state ID`: the JSON of runtime.md. A directory whose state is not written yet is "creating".
pub fn state_of(root: &StateRoot, id: &str) -> Result<serde_json::Value, ContainerError> {
    match current(root, id) {
        Ok(c) => Ok(c.json()),
        Err(ContainerError::State(StateError::NotFound(_)))
            if state::valid_name(id) && root.dir(id).is_dir() =>
        {
            Ok(serde_json::json!({
                "ociVersion": crate::oci::OCI_VERSION, "id": id, "status": "creating",
                "bundle": "", "annotations": {},
            }))
        }
        Err(e) => Err(e),
    }
}

fn wrong(op: &'static str, id: &str, status: OciStatus) -> ContainerError {
    ContainerError::WrongStatus {
        op,
        id: id.to_string(),
        status: status.name(),
    }
}

/// `start ID`: opens the start gate, hands the container its state (for the startContainer hooks) and
/// waits until it exec'd its command (the connection's EOF) or reported why not; then poststart hooks.
pub fn start(root: &StateRoot, id: &str) -> Result<(), ContainerError> {
    let mut c = current(root, id)?;
    if c.status != OciStatus::Created {
        return Err(wrong("start", id, c.status));
    }
    let sock = root.dir(id).join(START_SOCKET);
    let io = |what: &str| {
        let what = format!("{what} container {id}");
        move |err| ContainerError::Io { what, err }
    };
    let mut conn = super::oci::connect_unix(&sock).map_err(io("starting"))?;
    let mut running = c.json();
    running["status"] = "created".into();
    conn.write_all(running.to_string().as_bytes())
        .and_then(|()| conn.shutdown(std::net::Shutdown::Write))
        .map_err(io("starting"))?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).map_err(io("starting"))?;
    let _ = std::fs::remove_file(&sock);
    if !reply.is_empty() {
        // The container process reported why its command cannot run and is exiting; it closed this
        // connection before its mount and pid namespaces were torn down, which takes a while. Return
        // once it has exited, so that a `state` right after says stopped: containerd's shim deletes a
        // failed start at once and refuses a task that still looks created, leaving its cgroup and
        // state behind.
        crate::state::wait_process_gone(c.state.pid, c.state.pid_start, Duration::from_secs(5));
        return Err(ContainerError::Usage(reply));
    }
    c.state.status = Status::Running;
    root.save(&c.state)?;
    c.status = OciStatus::Running;
    let hooks = c.hooks();
    if let Err(e) = hooks::run_all(
        "poststart",
        hooks.poststart().as_deref().unwrap_or_default(),
        c.json().to_string().as_bytes(),
    ) {
        // runtime.md: a failing poststart hook is logged, the container keeps running.
        eprintln!("strata: warning: {e}");
    }
    Ok(())
}

/// `kill ID SIGNAL [--all]`: to the init process (pid + start time checked), or with `all` to every
/// process of the container's cgroup.
pub fn kill_container(
    root: &StateRoot,
    id: &str,
    sig: Signal,
    all: bool,
) -> Result<(), ContainerError> {
    let c = current(root, id)?;
    if c.status == OciStatus::Stopped {
        return Err(wrong("kill", id, c.status));
    }
    let send = |pid: i32| {
        kill(Pid::from_raw(pid), sig).map_err(|e| ContainerError::Io {
            what: format!("signalling container {id}"),
            err: e.into(),
        })
    };
    if all {
        let cg = c
            .state
            .cgroup
            .as_ref()
            .map(|(parent, name)| ContainerCgroup::open(parent, name))
            .transpose()?;
        for pid in cg.map(|cg| cg.procs()).unwrap_or_default() {
            let _ = send(pid);
        }
        return Ok(());
    }
    send(c.state.pid)
}

/// `delete ID [--force]`: a running (or paused) container needs `force` (it is killed); then the cgroup
/// and the state go and the poststop hooks run.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<(), ContainerError> {
    let c = match current(root, id) {
        Ok(c) => c,
        Err(ContainerError::State(StateError::NotFound(_)))
            if state::valid_name(id) && root.dir(id).is_dir() && force =>
        {
            root.remove(id)?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match c.status {
        OciStatus::Running | OciStatus::Paused if !force => {
            return Err(ContainerError::Running(id.to_string()));
        }
        OciStatus::Stopped => {}
        _ => {
            let _ = kill(Pid::from_raw(c.state.pid), Signal::SIGKILL);
        }
    }
    if let Some((parent, name)) = &c.state.cgroup {
        if let Ok(cg) = ContainerCgroup::open(parent, name) {
            let _ = cg.set_frozen(false);
            cg.kill_all()?;
            cg.remove()?;
        }
    }
    let mut stopped = c.json();
    stopped["status"] = "stopped".into();
    root.remove(id)?;
    let hooks = c.hooks();
    if let Err(e) = hooks::run_all(
        "poststop",
        hooks.poststop().as_deref().unwrap_or_default(),
        stopped.to_string().as_bytes(),
    ) {
        eprintln!("strata: warning: {e}");
    }
    Ok(())
}

/// `pause ID` / `resume ID`: freezes or thaws the container's cgroup.
pub fn set_paused(root: &StateRoot, id: &str, paused: bool) -> Result<(), ContainerError> {
    let c = current(root, id)?;
    let ok = if paused {
        c.status == OciStatus::Running
    } else {
        c.status == OciStatus::Paused
    };
    if !ok {
        return Err(wrong(if paused { "pause" } else { "resume" }, id, c.status));
    }
    let (parent, name) = c
        .state
        .cgroup
        .as_ref()
        .ok_or_else(|| ContainerError::Usage(format!("container {id} has no cgroup")))?;
    ContainerCgroup::open(parent, name)?.set_frozen(paused)?;
    Ok(())
}

/// `update ID`: new limits for a created, running or paused container's cgroup.
pub fn update(root: &StateRoot, id: &str, res: &Resources) -> Result<(), ContainerError> {
    let c = current(root, id)?;
    if c.status == OciStatus::Stopped {
        return Err(wrong("update", id, c.status));
    }
    let (parent, name) = c
        .state
        .cgroup
        .as_ref()
        .ok_or_else(|| ContainerError::Usage(format!("container {id} has no cgroup")))?;
    ContainerCgroup::open(parent, name)?.update(res)?;
    Ok(())
}

/// `ps ID`: host pids of the container's processes.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>, ContainerError> {
    let c = current(root, id)?;
    Ok(c.state
        .cgroup
        .as_ref()
        .and_then(|(parent, name)| ContainerCgroup::open(parent, name).ok())
        .map(|cg| cg.procs())
        .unwrap_or_default())
}

/// The bundle directory recorded for `id`.
pub fn bundle_of(root: &StateRoot, id: &str) -> Result<Option<PathBuf>, ContainerError> {
    Ok(root.load(id)?.bundle)
}
