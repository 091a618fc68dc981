//! `ps`, `kill`, `rm`, `exec` and `gc` against real containers.

mod common;
use common::Env;
use std::process::Stdio;

fn detach(env: &Env, name: &str, extra: &[&str], cmd: &[&str]) {
    let mut args = vec!["-d", "--name", name];
    args.extend_from_slice(extra);
    let out = env.run(&args, cmd);
    assert!(
        out.status.success(),
        "detach failed: {}",
        common::stderr(&out)
    );
    assert_eq!(common::stdout(&out).trim(), name);
}

fn ps_json(env: &Env, all: bool) -> Vec<serde_json::Value> {
    let mut c = env.strata();
    c.args(["ps", "--json"]);
    if all {
        c.arg("--all");
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn ps_kill_rm() {
    let env = Env::new();
    let name = common::unique("ps");
    detach(
        &env,
        &name,
        &[],
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 5' TERM; touch /tmp/ready; while :; do sleep 0.05; done",
        ],
    );
    common::wait_for_file(&env.rootfs.join("tmp/ready"));
    let list = ps_json(&env, false);
    let c = list
        .iter()
        .find(|c| c["id"] == name.as_str())
        .expect("listed");
    assert_eq!(c["status"], "running");
    assert_eq!(c["fs"], "bind");
    let pid = c["pid"].as_i64().unwrap() as i32;
    assert!(common::pid_alive(pid));
    let table = env.strata().arg("ps").output().unwrap();
    assert!(
        common::stdout(&table)
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("running"))
    );

    // A running container is not removed without --force.
    let rm = env.strata().args(["rm", &name]).output().unwrap();
    assert_eq!(rm.status.code(), Some(125));
    assert!(
        common::stderr(&rm).contains("--force"),
        "{}",
        common::stderr(&rm)
    );

    let kill = env.strata().args(["kill", &name, "TERM"]).output().unwrap();
    assert!(kill.status.success(), "{}", common::stderr(&kill));
    for _ in 0..2000 {
        let all = ps_json(&env, true);
        let c = all.iter().find(|c| c["id"] == name.as_str()).unwrap();
        if c["status"] == "exited" && c["exit_code"] == 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let all = ps_json(&env, true);
    assert_eq!(
        all.iter().find(|c| c["id"] == name.as_str()).unwrap()["exit_code"],
        5
    );
    let kill = env.strata().args(["kill", &name]).output().unwrap();
    assert_eq!(
        kill.status.code(),
        Some(125),
        "killing an exited container must fail"
    );
    assert!(env.strata().args(["rm", &name]).status().unwrap().success());
    assert!(ps_json(&env, true).iter().all(|c| c["id"] != name.as_str()));

    // rm --force kills a running one.
    let name = common::unique("force");
    detach(&env, &name, &[], &["/bin/sleep", "1000"]);
    let pid = common::wait_running(&env, &name)["pid"].as_i64().unwrap() as i32;
    assert!(
        env.strata()
            .args(["rm", "--force", &name])
            .status()
            .unwrap()
            .success()
    );
    assert!(!common::pid_alive(pid));
    let missing = env
        .strata()
        .args(["rm", "no-such-container"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(125));
    assert!(common::stderr(&missing).contains("does not exist"));
    env.assert_nothing_left();
}

#[test]
fn exec_joins_every_namespace_of_the_container() {
    let env = Env::new();
    let name = common::unique("exec");
    detach(
        &env,
        &name,
        &["--hostname", "inside"],
        &["/bin/sleep", "1000"],
    );
    let pid = common::wait_running(&env, &name)["pid"].as_i64().unwrap();
    let kinds = ["pid", "mnt", "net", "uts", "ipc", "cgroup"];
    let script: String = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}; "))
        .collect();
    let out = env
        .strata()
        .args(["exec", &name, "--", "/bin/sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let got: Vec<String> = common::stdout(&out).lines().map(str::to_string).collect();
    for (k, line) in kinds.iter().zip(&got) {
        let want = std::fs::read_link(format!("/proc/{pid}/ns/{k}"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(line, &want, "{k} namespace differs");
        let host = std::fs::read_link(format!("/proc/self/ns/{k}"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_ne!(line, &host, "{k} namespace is the host's");
    }
    // The joined process is in the container's cgroup in every hierarchy: the same lines as pid 1's.
    let out = env.exec_sh(&name, "cat /proc/1/cgroup; echo --; cat /proc/self/cgroup");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    let (init, joined) = text.split_once("--\n").expect("two cgroup listings");
    assert!(!init.is_empty());
    assert_eq!(
        init, joined,
        "the exec'd process is not in the container's cgroup"
    );
    let out = env.exec_sh(&name, "hostname; ls /proc | grep -c '^[0-9]'; exit 6");
    assert_eq!(out.status.code(), Some(6));
    let lines: Vec<String> = common::stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "inside");
    let out = env
        .strata()
        .args([
            "exec",
            "--user",
            "1000",
            "--env",
            "X=y",
            &name,
            "--",
            "/bin/sh",
            "-c",
            "id -u; echo $X; grep CapEff /proc/self/status",
        ])
        .output()
        .unwrap();
    assert_eq!(
        common::stdout(&out),
        "1000\ny\nCapEff:\t0000000000000000\n",
        "{}",
        common::stderr(&out)
    );
    let out = env
        .strata()
        .args(["exec", &name, "--", "no-such"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        env.strata()
            .args(["rm", "-f", &name])
            .status()
            .unwrap()
            .success()
    );
    let out = env
        .strata()
        .args(["exec", &name, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    env.assert_nothing_left();
}

#[test]
fn gc_cleans_up_after_kill_9_of_strata() {
    let env = Env::new();
    for fs in ["bind", "kernel"] {
        let name = common::unique("gc");
        let mut child = env
            .strata()
            .args(["run", "--fs", fs, "--name", &name, "--rootfs"])
            .arg(&env.rootfs)
            .args(["--", "/bin/sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let st = common::wait_running(&env, &name);
        let pid = st["pid"].as_i64().unwrap() as i32;
        assert_eq!(st["monitor_pid"].as_i64().unwrap() as u32, child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        // The container dies with its monitor (parent-death signal) …
        for _ in 0..2000 {
            if !common::pid_alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!common::pid_alive(pid), "container outlived strata");
        // … and its state stays until gc.
        assert!(env.state.join(&name).join("state.json").exists());
        let gc = env.strata().arg("gc").output().unwrap();
        assert!(gc.status.success(), "{}", common::stderr(&gc));
        assert!(
            common::stdout(&gc).lines().any(|l| l == name),
            "gc did not report {name}"
        );
        assert!(!env.state.join(&name).exists());
    }
    // gc leaves running containers alone.
    let name = common::unique("alive");
    detach(&env, &name, &[], &["/bin/sleep", "1000"]);
    common::wait_running(&env, &name);
    let gc = env.strata().arg("gc").output().unwrap();
    assert!(!common::stdout(&gc).contains(&name));
    assert_eq!(ps_json(&env, false).len(), 1);
    assert!(
        env.strata()
            .args(["rm", "-f", &name])
            .status()
            .unwrap()
            .success()
    );
    env.assert_nothing_left();
}

#[test]
fn kernel_overlay_rootfs_has_a_private_upper_layer() {
    let env = Env::new();
    let name = common::unique("ovl");
    let out = env.run(
        &["--fs", "kernel", "--name", &name],
        &[
            "/bin/sh",
            "-c",
            "echo data > /written; rm /etc/group; cat /written",
        ],
    );
    assert_eq!(common::stdout(&out), "data\n", "{}", common::stderr(&out));
    // The lower layer is untouched; the change lives in the container's upper dir until rm.
    assert!(!env.rootfs.join("written").exists());
    assert!(env.rootfs.join("etc/group").exists());
    assert!(env.state.join(&name).join("upper/written").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&name),
        "the overlay is visible in the host's mount table"
    );
    let rm = env
        .strata()
        .args(["rm", "--keep-upper", &name])
        .output()
        .unwrap();
    assert!(rm.status.success(), "{}", common::stderr(&rm));
    let kept = std::path::PathBuf::from(common::stdout(&rm).trim());
    assert_eq!(
        std::fs::read_to_string(kept.join("written")).unwrap(),
        "data\n"
    );
    assert!(!env.state.join(&name).exists());
    assert!(
        common::ps_all_ids(&env).is_empty(),
        "the kept upper is listed as a container"
    );
    std::fs::remove_dir_all(env.state.join(".kept-uppers")).unwrap();
    // --lower takes several layers, top-first.
    let top = env.tmp.path().join("top");
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::write(top.join("etc/motd"), "from the top layer\n").unwrap();
    let lowers = format!("{}:{}", top.display(), env.rootfs.display());
    let out = env
        .strata()
        .args([
            "run",
            "--rm",
            "--lower",
            &lowers,
            "--",
            "/bin/cat",
            "/etc/motd",
        ])
        .output()
        .unwrap();
    assert_eq!(
        common::stdout(&out),
        "from the top layer\n",
        "{}",
        common::stderr(&out)
    );
    env.assert_nothing_left();
}

#[test]
fn detached_failures_leave_nothing_and_stats_see_a_running_container() {
    let env = Env::new();
    let out = env.run(
        &["-d", "--name", &common::unique("dnf")],
        &["no-such-command"],
    );
    assert_eq!(out.status.code(), Some(127), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("no-such-command"));
    env.assert_nothing_left();

    let name = common::unique("stats");
    detach(
        &env,
        &name,
        &["--memory", "64m", "--pids", "20"],
        &["/bin/sh", "-c", "sleep 1000 & sleep 1000"],
    );
    common::wait_running(&env, &name);
    let out = env
        .strata()
        .args(["stats", "--json", "--interval", "0.1", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &v.as_array().unwrap()[0];
    assert_eq!(row["id"], name.as_str());
    assert!(row["pids_current"].as_u64().unwrap() >= 2, "{row}");
    assert_eq!(row["memory_limit_bytes"].as_u64(), Some(64 << 20), "{row}");
    assert_eq!(row["pids_limit"].as_u64(), Some(20), "{row}");
    assert!(
        env.strata()
            .args(["rm", "-f", &name])
            .status()
            .unwrap()
            .success()
    );
    env.assert_nothing_left();
}
