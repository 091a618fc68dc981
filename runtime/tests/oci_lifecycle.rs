//! The OCI lifecycle through the real binary, checked with `strata state`: create → created → start →
//! running → exit → stopped → delete, the errors runc gives, kill --all, pause/resume and run --bundle.

mod common;
mod oci_support;

use common::{Env, unique};
use oci_support::*;

#[test]
fn oci_create_start_exit_delete() {
    let env = Env::new();
    let id = unique("oci");
    let go = env.rootfs.join("tmp/go");
    let ran = env.rootfs.join("tmp/ran");
    let config = default_config(
        &env.rootfs,
        &[
            "sh",
            "-c",
            "touch /tmp/ran; while [ ! -e /tmp/go ]; do sleep 0.02; done; exit 7",
        ],
    );
    let bundle = write_bundle(&env, "life", &config);
    let pid_file = env.tmp.path().join("pid");
    let (status, err) = create(
        &env,
        &id,
        &bundle,
        &["--pid-file", pid_file.to_str().unwrap()],
    );
    assert!(status.success(), "create: {err}");

    let s = state(&env, &id);
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["bundle"], bundle.to_str().unwrap());
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert!(common::pid_alive(pid as i32), "the init waits, alive");
    assert!(!ran.exists(), "the command must not run before start");

    let o = oci(&env, &["start", &id]);
    assert!(o.status.success(), "start: {}", common::stderr(&o));
    wait_path(&ran);
    assert_eq!(state(&env, &id)["status"], "running");

    std::fs::write(&go, "").unwrap();
    let s = wait_status(&env, &id, "stopped");
    assert!(
        s.get("pid").is_none() || s["pid"] == 0,
        "a stopped container has no pid: {s}"
    );

    let o = oci(&env, &["delete", &id]);
    assert!(o.status.success(), "delete: {}", common::stderr(&o));
    assert_one_line_error(&oci(&env, &["state", &id]), "no such container");
    env.assert_nothing_left();
}

#[test]
fn oci_errors_for_wrong_states_and_unknown_ids() {
    let env = Env::new();
    let id = unique("oci");
    let bundle = write_bundle(
        &env,
        "err",
        &default_config(&env.rootfs, &["sleep", "1000"]),
    );
    let (status, err) = create(&env, &id, &bundle, &[]);
    assert!(status.success(), "create: {err}");
    let (again, err) = create(&env, &id, &bundle, &[]);
    assert!(!again.success() && err.contains("already in use"), "{err}");
    assert!(oci(&env, &["start", &id]).status.success());
    wait_status(&env, &id, "running");

    assert_one_line_error(&oci(&env, &["start", &id]), "running");
    assert_one_line_error(&oci(&env, &["delete", &id]), "running");
    assert_eq!(
        state(&env, &id)["status"],
        "running",
        "a refused delete changes nothing"
    );
    let o = oci(&env, &["delete", "--force", &id]);
    assert!(o.status.success(), "delete --force: {}", common::stderr(&o));

    let ghost = unique("oci-none");
    for cmd in [
        vec!["state", ghost.as_str()],
        vec!["start", ghost.as_str()],
        vec!["kill", ghost.as_str(), "TERM"],
        vec!["delete", ghost.as_str()],
        vec!["pause", ghost.as_str()],
    ] {
        assert_one_line_error(&oci(&env, &cmd), "no such container");
    }
    env.assert_nothing_left();
}

#[test]
fn oci_kill_signals_init_or_all_processes() {
    let env = Env::new();
    let id = unique("oci");
    let waited = env.rootfs.join("tmp/waited");
    // pid 1 (sh) has no TERM handler, so TERM only ends its children; it then records that and stays.
    let script = "sleep 1000 & sleep 1000 & wait; touch /tmp/waited; exec sleep 1000";
    let bundle = write_bundle(
        &env,
        "kill",
        &default_config(&env.rootfs, &["sh", "-c", script]),
    );
    let (status, err) = create(&env, &id, &bundle, &[]);
    assert!(status.success(), "create: {err}");
    assert!(oci(&env, &["start", &id]).status.success());
    wait_status(&env, &id, "running");
    for _ in 0..2000 {
        if pids(&env, &id).len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(pids(&env, &id).len(), 3, "sh and two sleeps");

    let o = oci(&env, &["kill", "--all", &id, "SIGTERM"]);
    assert!(o.status.success(), "kill --all: {}", common::stderr(&o));
    wait_path(&waited);
    assert_eq!(state(&env, &id)["status"], "running", "pid 1 ignores TERM");

    let o = oci(&env, &["kill", &id, "9"]);
    assert!(o.status.success(), "kill 9: {}", common::stderr(&o));
    wait_status(&env, &id, "stopped");
    assert_one_line_error(&oci(&env, &["kill", &id, "KILL"]), "stopped");
    assert!(oci(&env, &["delete", &id]).status.success());
    env.assert_nothing_left();
}

fn pids(env: &Env, id: &str) -> Vec<i64> {
    let o = oci(env, &["ps", id, "--format", "json"]);
    assert!(o.status.success(), "ps: {}", common::stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn oci_pause_freezes_and_resume_thaws() {
    let env = Env::new();
    let id = unique("oci");
    let ticks = env.rootfs.join("tmp/ticks");
    let script = "while :; do echo x >> /tmp/ticks; sleep 0.01; done";
    let bundle = write_bundle(
        &env,
        "pause",
        &default_config(&env.rootfs, &["sh", "-c", script]),
    );
    let (status, err) = create(&env, &id, &bundle, &[]);
    assert!(status.success(), "create: {err}");
    assert!(oci(&env, &["start", &id]).status.success());
    wait_path(&ticks);

    let o = oci(&env, &["pause", &id]);
    assert!(o.status.success(), "pause: {}", common::stderr(&o));
    let s = wait_status(&env, &id, "paused");
    let pid = s["pid"].as_i64().unwrap();
    // Frozen for good once the freezer reports FROZEN: the loop makes no progress.
    let freezer = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = freezer
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string()))
        .expect("the container is in a freezer cgroup");
    let state_file = format!("/sys/fs/cgroup/freezer{rel}/freezer.state");
    for _ in 0..2000 {
        if std::fs::read_to_string(&state_file).unwrap().trim() == "FROZEN" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_to_string(&state_file).unwrap().trim(),
        "FROZEN"
    );
    let before = std::fs::read(&ticks).unwrap().len();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        std::fs::read(&ticks).unwrap().len(),
        before,
        "no progress while paused"
    );
    assert_one_line_error(&oci(&env, &["pause", &id]), "paused");

    let o = oci(&env, &["resume", &id]);
    assert!(o.status.success(), "resume: {}", common::stderr(&o));
    wait_status(&env, &id, "running");
    for _ in 0..2000 {
        if std::fs::read(&ticks).unwrap().len() > before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        std::fs::read(&ticks).unwrap().len() > before,
        "runs again after resume"
    );
    assert!(oci(&env, &["delete", "--force", &id]).status.success());
    env.assert_nothing_left();
}

#[test]
fn oci_run_bundle_exits_with_the_container_status() {
    let env = Env::new();
    let id = unique("oci");
    let bundle = write_bundle(
        &env,
        "run",
        &default_config(&env.rootfs, &["sh", "-c", "hostname; exit 3"]),
    );
    let o = env
        .strata()
        .args(["run", &id, "--bundle", bundle.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "stderr: {}", common::stderr(&o));
    assert_eq!(common::stdout(&o).trim(), "oci-test");
    env.assert_nothing_left();
}

#[test]
fn oci_features_and_version() {
    let env = Env::new();
    let o = oci(&env, &["features"]);
    assert!(o.status.success());
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert!(
        f["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "startContainer")
    );
    let o = oci(&env, &["--version"]);
    assert!(common::stdout(&o).contains("spec: 1.2.0"));
    assert_one_line_error(
        &oci(&env, &["--systemd-cgroup", "state", "x"]),
        "--systemd-cgroup",
    );
}
