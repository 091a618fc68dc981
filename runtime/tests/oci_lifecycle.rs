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
    assert_one_line_error(&oci(&env, &["state", &id]), "does not exist");
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
        assert_one_line_error(&oci(&env, &cmd), "does not exist");
    }
    env.assert_nothing_left();
}

#[test]
fn a_start_that_cannot_exec_leaves_a_stopped_container() {
    // The container process reports the failed exec to `strata start` and exits, and a mount
    // namespace with many mounts takes a while to go. containerd's shim deletes a failed start at
    // once and refuses a task whose state still says created (its cgroup and state were then left
    // behind): `start` returns only once the process has exited.
    let env = Env::new();
    let mut config = default_config(&env.rootfs, &["/etc/passwd"]);
    let mounts = config["mounts"].as_array_mut().unwrap();
    for i in 0..200 {
        mounts.push(serde_json::json!({
            "destination": format!("/tmp/many/m{i}"), "type": "tmpfs", "source": "tmpfs",
        }));
    }
    let bundle = write_bundle(&env, "noexec", &config);
    for _ in 0..5 {
        let id = unique("oci");
        let (status, err) = create(&env, &id, &bundle, &[]);
        assert!(status.success(), "create: {err}");
        let pid = state(&env, &id)["pid"].as_i64().unwrap();
        let o = oci(&env, &["start", &id]);
        // Looked at right away (a `strata state` would take a fork and an exec first).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_paren = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
        assert!(
            stat.is_empty() || after_paren.starts_with('Z'),
            "the container process still runs after the failed start: {stat}"
        );
        assert!(!o.status.success());
        assert!(
            common::stderr(&o).contains("permission denied"),
            "{}",
            common::stderr(&o)
        );
        assert_eq!(state(&env, &id)["status"], "stopped");
        let o = oci(&env, &["delete", &id]);
        assert!(o.status.success(), "delete: {}", common::stderr(&o));
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

    let pid = state(&env, &id)["pid"].as_i64().unwrap();
    let freezer = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = freezer
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string()))
        .expect("the container is in a freezer cgroup");
    let state_file = format!("/sys/fs/cgroup/freezer{rel}/freezer.state");
    let o = oci(&env, &["pause", &id]);
    assert!(o.status.success(), "pause: {}", common::stderr(&o));
    // `pause` returns once every process has stopped (FROZEN, not FREEZING): the loop makes no progress.
    assert_eq!(
        std::fs::read_to_string(&state_file).unwrap().trim(),
        "FROZEN"
    );
    wait_status(&env, &id, "paused");
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

#[test]
fn oci_exec_process_json_and_argv_forms() {
    let env = Env::new();
    let id = unique("oci");
    let bundle = write_bundle(
        &env,
        "exec",
        &default_config(&env.rootfs, &["sleep", "1000"]),
    );
    let (status, err) = create(&env, &id, &bundle, &[]);
    assert!(status.success(), "create: {err}");
    assert!(oci(&env, &["start", &id]).status.success());
    wait_status(&env, &id, "running");

    // --process: args, env, cwd and user all come from the file.
    let process = serde_json::json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [2000]},
        "args": ["sh", "-c", "echo \"$(id -u):$(id -G):$(pwd):$GREETING\"; exit 4"],
        "env": ["PATH=/bin", "GREETING=hello"],
        "cwd": "/home/user",
        "capabilities": {"bounding": [], "effective": [], "permitted": []},
        "noNewPrivileges": true
    });
    let pfile = env.tmp.path().join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let o = oci(&env, &["exec", &id, "--process", pfile.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "stderr: {}", common::stderr(&o));
    assert_eq!(common::stdout(&o).trim(), "1000:1000 2000:/home/user:hello");

    // argv form with --cwd and --env.
    let o = oci(
        &env,
        &[
            "exec",
            "--cwd",
            "/tmp",
            "--env",
            "X=1",
            &id,
            "--",
            "sh",
            "-c",
            "echo $(pwd) $X",
        ],
    );
    assert!(o.status.success(), "stderr: {}", common::stderr(&o));
    assert_eq!(common::stdout(&o).trim(), "/tmp 1");

    // --detach --pid-file: strata returns while the process keeps running in the container.
    let pid_file = env.tmp.path().join("exec.pid");
    // Its stdio goes to a file: the detached process keeps what it inherits open.
    let log = std::fs::File::create(env.tmp.path().join("exec.log")).unwrap();
    let status = env
        .strata()
        .args([
            "exec",
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "--",
        ])
        .args(["sleep", "1000"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "exec --detach: {}",
        std::fs::read_to_string(env.tmp.path().join("exec.log")).unwrap()
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        common::pid_alive(pid),
        "the detached exec process runs after strata exits"
    );
    let in_container = pids(&env, &id);
    assert!(
        in_container.contains(&i64::from(pid)),
        "{pid} in {in_container:?}"
    );
    assert!(oci(&env, &["delete", "--force", &id]).status.success());
    env.assert_nothing_left();
}
