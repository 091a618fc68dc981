//! `strata stats` and `strata info` as a user runs them (the built binary).

mod cgroups_support;

use std::process::Command;

use cgroups_support::{BUSYBOX, Gated, TestParent};
use strata_runtime::cgroups::{self, ContainerCgroup, Resources};

/// The strata binary with a state directory that does not exist (stats only reads it), so
/// containers of other tests on this machine never show up; tests that need state pass their own
/// --state-dir, which wins over the environment.
fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env(
        "STRATA_STATE",
        format!("/nonexistent/strata-test-res-{}", std::process::id()),
    );
    c
}

#[test]
fn stats_json_shows_a_busy_container() {
    let parent = TestParent::new();
    let res = Resources {
        memory: Some(256 << 20),
        pids: Some(100),
        ..Default::default()
    };
    let busy = ContainerCgroup::create(&parent.name, "busy", &res).unwrap();
    let idle = ContainerCgroup::create(&parent.name, "idle", &Resources::default()).unwrap();
    // The sleeper is forked inside the cgroup, so its memory is charged there (v1 does not move
    // the charges of a process that joins).
    let mut spin = Gated::spawn(&format!("{BUSYBOX} sleep 60 & while :; do :; done"));
    spin.join(&busy);
    spin.release();
    let mut sleeper = Gated::spawn(&format!("exec {BUSYBOX} sleep 60"));
    sleeper.join(&idle);
    sleeper.release();

    let out = strata()
        .args([
            "stats",
            "--json",
            "--interval",
            "0.5",
            "--cgroup-parent",
            &parent.name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let busy_row = rows.iter().find(|r| r["id"] == "busy").unwrap();
    let idle_row = rows.iter().find(|r| r["id"] == "idle").unwrap();
    let cpu = busy_row["cpu_percent"].as_f64().unwrap();
    // A shell spin loop on a shared 2-core machine: busy (how busy depends on the machine's load,
    // so only a clear nonzero share is asserted), at most one CPU, and busier than the sleeper.
    let idle_cpu = idle_row["cpu_percent"].as_f64().unwrap();
    assert!(cpu > 1.0 && cpu < 110.0, "busy cpu {cpu}");
    assert!(
        idle_cpu < 1.0 && idle_cpu < cpu,
        "idle cpu {idle_cpu}, busy {cpu}"
    );
    assert_eq!(busy_row["memory_limit_bytes"], 256u64 << 20);
    assert_eq!(busy_row["pids_limit"], 100);
    assert!(busy_row["pids_current"].as_u64().unwrap() >= 1);
    assert!(busy_row["memory_usage_bytes"].as_u64().unwrap() > 0);
    assert!(idle_row["memory_limit_bytes"].is_null());

    // Text output names both; one ID selects one row.
    let out = strata()
        .args([
            "stats",
            "--interval",
            "0.2",
            "--cgroup-parent",
            &parent.name,
            "idle",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("idle") && !text.contains("busy"), "{text}");

    // An unknown container: one line, exit 125.
    let out = strata()
        .args(["stats", "--cgroup-parent", &parent.name, "ghost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("ghost") && err.trim().lines().count() == 1,
        "{err}"
    );

    busy.kill_all().unwrap();
    idle.kill_all().unwrap();
    busy.remove().unwrap();
    idle.remove().unwrap();
    parent.finish();
}

#[test]
fn stats_watch_ends_when_the_container_is_gone() {
    let parent = TestParent::new();
    let cg = ContainerCgroup::create(&parent.name, "w", &Resources::default()).unwrap();
    let child = strata()
        .args([
            "stats",
            "--json",
            "--watch",
            "--interval",
            "0.2",
            "--cgroup-parent",
            &parent.name,
            "w",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    cg.remove().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    // Several refreshes with the container, then an empty one, then exit.
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines[0].contains("\"id\":\"w\""), "{lines:?}");
    assert_eq!(*lines.last().unwrap(), "[]");
    parent.finish();
}

#[test]
fn info_json_describes_this_host() {
    let out = strata().args(["info", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cgroup_mode"], cgroups::detect().to_string());
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    assert_eq!(v["kernel_release"], release);
    let ns: Vec<&str> = v["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"] {
        assert!(ns.contains(&want), "{want} missing from {ns:?}");
    }
    let overlay = std::fs::read_to_string("/proc/filesystems")
        .unwrap()
        .contains("overlay");
    assert_eq!(v["overlay"], overlay);
    assert_eq!(v["fuse"], std::path::Path::new("/dev/fuse").exists());
    assert!(
        v["fuse_passthrough"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let text = strata().arg("info").output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("cgroup mode") && text.contains(&release),
        "{text}"
    );
}

#[test]
fn stats_finds_containers_through_their_state() {
    use strata_runtime::state::{State, StateRoot, Status, now_unix, process_start_time};
    let parent = TestParent::new();
    // The cgroup's name differs from the container id: only the state links them.
    let cg = ContainerCgroup::create(&parent.name, "cg-of-web", &Resources::default()).unwrap();
    let mut spin = Gated::spawn("while :; do :; done");
    spin.join(&cg);
    spin.release();
    let states = tempfile::tempdir().unwrap();
    let root = StateRoot::new(states.path());
    let pid = spin.pid();
    let me = std::process::id() as i32;
    let st = State {
        id: "web".into(),
        status: Status::Running,
        pid,
        pid_start: process_start_time(pid).unwrap(),
        monitor_pid: me,
        monitor_start: process_start_time(me).unwrap(),
        created_unix: now_unix(),
        image: None,
        fs: "bind".into(),
        rootfs: "/".into(),
        command: vec!["spin".into()],
        exit_code: None,
        oom_killed: false,
        cgroup: Some((parent.name.clone(), "cg-of-web".into())),
        bridge: false,
        auto_remove: false,
        namespaces: vec![],
        bundle: None,
    };
    root.claim("web").unwrap();
    root.save(&st).unwrap();
    let state_dir = states.path().to_str().unwrap();

    // By id.
    let out = strata()
        .args([
            "stats",
            "--json",
            "--interval",
            "0.3",
            "--state-dir",
            state_dir,
            "web",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], "web");
    // Clearly nonzero; how much a spin loop gets depends on the shared machine's load.
    assert!(rows[0]["cpu_percent"].as_f64().unwrap() > 1.0, "{rows}");

    // All: the running container once, under its id (not again under its cgroup name).
    let out = strata()
        .args([
            "stats",
            "--json",
            "--interval",
            "0.2",
            "--state-dir",
            state_dir,
        ])
        .args(["--cgroup-parent", &parent.name])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["web"]);

    cg.kill_all().unwrap();
    cg.remove().unwrap();
    parent.finish();
}
