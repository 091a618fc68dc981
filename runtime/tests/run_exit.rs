//! Exit statuses, signals and failures of `strata run`; every failure leaves nothing behind.

mod common;
use common::Env;
use std::process::Stdio;

#[test]
fn exit_status_is_the_commands() {
    let env = Env::new();
    for code in [0, 1, 7, 255] {
        let out = env.run(&["--rm"], &["/bin/sh", "-c", &format!("exit {code}")]);
        assert_eq!(out.status.code(), Some(code));
    }
    env.assert_nothing_left();
}

#[test]
fn without_rm_the_exited_container_stays_until_rm() {
    let env = Env::new();
    let name = common::unique("keep");
    let out = env.run(&["--name", &name], &["/bin/sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let ps = env
        .strata()
        .args(["ps", "--all", "--json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == name.as_str())
        .expect("container listed");
    assert_eq!(me["status"], "exited");
    assert_eq!(me["exit_code"], 3);
    let ps = env.strata().args(["ps", "--json"]).output().unwrap();
    assert!(
        !common::stdout(&ps).contains(&name),
        "an exited container is listed without --all"
    );
    assert!(env.strata().args(["rm", &name]).status().unwrap().success());
    env.assert_nothing_left();
}

#[test]
fn not_found_is_127_and_not_executable_is_126() {
    let env = Env::new();
    let out = env.run(&["--rm"], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    let err = common::stderr(&out);
    assert!(
        err.contains("no-such-command") && err.lines().count() == 1,
        "{err}"
    );
    let out = env.run(&["--rm"], &["/bin/nope"]);
    assert_eq!(out.status.code(), Some(127));
    let out = env.run(&["--rm"], &["/etc/not-executable"]);
    assert_eq!(out.status.code(), Some(126), "{}", common::stderr(&out));
    let out = env.run(&["--rm"], &["/etc"]);
    assert_eq!(out.status.code(), Some(126));
    // Also without --rm: a container that never started leaves no state.
    let out = env.run(&["--name", &common::unique("nf")], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    env.assert_nothing_left();
}

#[test]
fn strata_errors_are_125_with_one_line() {
    let env = Env::new();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--cap-add", "NOT_A_CAP"],
        vec!["--workdir", "relative"],
        vec!["--name", "bad/name"],
        vec!["--join", "net=/nonexistent/ns"],
        vec!["--user", "no-such-user"],
    ];
    for extra in cases {
        let mut args = vec!["--rm"];
        args.extend(&extra);
        let out = env.run(&args, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{extra:?}: {}",
            common::stderr(&out)
        );
        let err = common::stderr(&out);
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        assert!(err.starts_with("strata: "), "{err}");
    }
    let out = env
        .strata()
        .args(["run", "--rootfs", "/nonexistent/rootfs", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(common::stderr(&out).contains("/nonexistent/rootfs"));
    env.assert_nothing_left();
}

#[test]
fn a_setup_step_that_fails_in_the_container_process_is_named() {
    // The kernel refuses a hostname over 64 bytes: the container process fails early in its set-up,
    // while strata is still making its network namespace and cgroup. Its own report is what the user
    // sees (it was once lost to strata's "talking to the container process: EPIPE"), every time.
    let env = Env::new();
    let long = "h".repeat(70);
    for fs in ["bind", "kernel"] {
        for _ in 0..5 {
            let out = env.run(&["--rm", "--fs", fs, "--hostname", &long], &["true"]);
            let err = common::stderr(&out);
            assert_eq!(out.status.code(), Some(125), "--fs {fs}: {err}");
            assert_eq!(err.lines().count(), 1, "--fs {fs}: {err}");
            assert!(
                err.starts_with("strata: setting the hostname: "),
                "--fs {fs}: {err}"
            );
        }
    }
    env.assert_nothing_left();
}

#[test]
fn kill_maps_to_128_plus_signal() {
    let env = Env::new();
    let name = common::unique("sig");
    let child = env
        .strata()
        .args(["run", "--rm", "--name", &name, "--rootfs"])
        .arg(&env.rootfs)
        .args(["--", "/bin/sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_running(&env, &name);
    let k = env.strata().args(["kill", &name]).output().unwrap();
    assert!(k.status.success(), "{}", common::stderr(&k));
    let out = common::wait_child(child);
    assert_eq!(out.status.code(), Some(137));
    env.assert_nothing_left();
}

#[test]
fn signals_to_strata_are_forwarded() {
    let env = Env::new();
    // pid 1 with a handler receives the forwarded SIGTERM.
    let name = common::unique("fwd");
    let child = env
        .strata()
        .args(["run", "--rm", "--name", &name, "--rootfs"])
        .arg(&env.rootfs)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "trap 'exit 42' TERM; touch /tmp/ready; while :; do sleep 0.05; done",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_running(&env, &name);
    // The handler exists only once the shell has run `trap`; before that pid 1 ignores SIGTERM.
    common::wait_for_file(&env.rootfs.join("tmp/ready"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(common::wait_child(child).status.code(), Some(42));

    // With --init, a command without handlers still gets the signal (it is pid 2) and dies: 128+15.
    let name = common::unique("init");
    let child = env
        .strata()
        .args(["run", "--rm", "--init", "--name", &name, "--rootfs"])
        .arg(&env.rootfs)
        .args(["--", "/bin/sleep", "1000"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_running(&env, &name);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(common::wait_child(child).status.code(), Some(143));
    env.assert_nothing_left();
}

#[test]
fn init_reaps_zombies_and_runs_the_command_as_pid_2() {
    let env = Env::new();
    // The orphaned background sleep is re-parented to init, which must reap it.
    let out = env.sh(
        &["--init"],
        "echo $$; (sleep 0.1 &); sleep 0.3; grep -l Z /proc/[0-9]*/stat 2>/dev/null | wc -l",
    );
    assert_eq!(out, "2\n0\n");
    let out = env.run(&["--rm", "--init"], &["/bin/sh", "-c", "exit 9"]);
    assert_eq!(out.status.code(), Some(9));
    let out = env.run(&["--rm", "--init"], &["nope"]);
    assert_eq!(out.status.code(), Some(127));
    env.assert_nothing_left();
}

#[test]
fn a_name_in_use_is_refused_and_racing_runs_have_one_winner() {
    let env = Env::new();
    let name = common::unique("dup");
    let d = env.run(&["-d", "--name", &name], &["/bin/sleep", "1000"]);
    assert!(d.status.success(), "{}", common::stderr(&d));
    assert_eq!(common::stdout(&d).trim(), name);
    let again = env.run(&["--rm", "--name", &name], &["true"]);
    assert_eq!(again.status.code(), Some(125));
    assert!(
        common::stderr(&again).contains("already in use"),
        "{}",
        common::stderr(&again)
    );
    assert!(
        env.strata()
            .args(["rm", "--force", &name])
            .status()
            .unwrap()
            .success()
    );

    let race = common::unique("race");
    let spawn = || {
        env.strata()
            .args(["run", "--rm", "--name", &race, "--rootfs"])
            .arg(&env.rootfs)
            .args(["--", "/bin/sleep", "0.5"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (common::wait_child(a), common::wait_child(b));
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(125)),
        "{codes:?}"
    );
    let loser = if a.status.code() == Some(125) { &a } else { &b };
    assert!(common::stderr(loser).contains("already in use"));
    env.assert_nothing_left();
}

#[test]
fn memory_hog_is_oom_killed_with_137_and_a_report() {
    let env = Env::new();
    let name = common::unique("oom");
    let out = env.run(
        &["--name", &name, "--memory", "32m", "--memory-swap", "32m"],
        &[
            "/bin/sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(out.status.code(), Some(137), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("out of memory"),
        "{}",
        common::stderr(&out)
    );
    assert!(!common::stdout(&out).contains("survived"));
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.state.join(&name).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["oom_killed"], true);
    assert!(env.strata().args(["rm", &name]).status().unwrap().success());
    env.assert_nothing_left();
}

#[test]
fn pids_limit_stops_a_fork_bomb_and_limits_are_checked() {
    let env = Env::new();
    let out = env.run(
        &["--rm", "--pids", "8"],
        &["/bin/sh", "-c", "(i=0; while [ $i -lt 30 ]; do sleep 2 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#"],
    );
    let n: u32 = common::stdout(&out).trim().parse().unwrap_or(999);
    // Counted with shell builtins only (no fork is possible at the limit).
    assert!(
        (2..=8).contains(&n),
        "expected 2..=8 processes, got {n} ({})",
        common::stderr(&out)
    );
    // A limit the kernel cannot take: one line, 125, nothing left.
    let bad = env.run(&["--rm", "--memory", "1k"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert_eq!(
        common::stderr(&bad).lines().count(),
        1,
        "{}",
        common::stderr(&bad)
    );
    let bad = env.run(&["--rm", "--cpus", "-1"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    let bad = env.run(&["--rm", "--net-rate", "1mbit"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    env.assert_nothing_left();
}
