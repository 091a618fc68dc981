//! `docker run --runtime strata`: Docker's containerd shim drives strata through the OCI command line
//! (create, start, state, kill, delete, exec, pause, resume, update). runc under the same daemon is the
//! oracle where Docker's own behaviour decides what is right (exit codes, what the process sees).

mod docker_support;

use docker_support::{
    Container, IMAGE, cgroup_dir, docker, docker_in_pty, docker_ok, err, leftovers, out,
    parse_size, read, require_docker, run_args,
};

/// `docker run --rm --runtime RT --network none EXTRA… IMAGE CMD…` → (exit code, stdout, stderr).
fn run_rm(runtime: &str, extra: &[&str], cmd: &[&str]) -> (i32, String, String) {
    require_docker();
    let name = docker_support::unique("rm");
    let o = docker(&run_args(&["--rm"], &name, runtime, extra, cmd));
    (o.status.code().unwrap_or(-1), out(&o), err(&o))
}

#[test]
fn docker_exit_codes_match_runc() {
    let cases: &[(&[&str], i32)] = &[
        (&["true"], 0),
        (&["sh", "-c", "exit 7"], 7),
        (&["false"], 1),
        // Killed by a signal it cannot ignore (sent by itself to a child it waits for: pid 1 ignores it).
        (&["sh", "-c", "sh -c 'kill -KILL $$'; exit $?"], 137),
        // Docker's own codes: 127 command not found, 126 not executable.
        (&["/no/such/command"], 127),
        (&["/etc/passwd"], 126),
    ];
    for (cmd, want) in cases {
        let (runc, _, runc_err) = run_rm("runc", &[], cmd);
        let (strata, _, strata_err) = run_rm("strata", &[], cmd);
        assert_eq!(runc, *want, "runc {cmd:?}: {runc_err}");
        assert_eq!(strata, *want, "strata {cmd:?}: {strata_err}");
    }
}

#[test]
fn docker_env_user_workdir_match_runc() {
    let extra = [
        "-e",
        "GREETING=hello world",
        "-e",
        "EMPTY=",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "--hostname",
        "strata-host",
    ];
    let script = "id; pwd; hostname; env | grep -v '^HOSTNAME=' | sort; umask; ulimit -n; \
                  grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status";
    let (c1, runc, e1) = run_rm("runc", &extra, &["sh", "-c", script]);
    let (c2, strata, e2) = run_rm("strata", &extra, &["sh", "-c", script]);
    assert_eq!((c1, c2), (0, 0), "runc: {e1} strata: {e2}");
    assert!(
        strata.contains("uid=1000") && strata.contains("GREETING=hello world"),
        "{strata}"
    );
    assert_eq!(strata, runc, "what the process sees differs from runc");
}

#[test]
fn docker_mounts_and_devices_match_runc() {
    // Paths only: the sources and the order of Docker's own binds are Docker's business.
    let script = "awk '{print $5, $9}' /proc/self/mountinfo | sort; ls -l /dev | awk '{print $1, $NF}'; \
                  cat /etc/hostname >/dev/null && echo hostname-ok; touch /proc/sys/x 2>/dev/null || echo proc-sys-ro; \
                  cat /proc/kcore 2>/dev/null | head -c1 | wc -c";
    let (c1, runc, e1) = run_rm("runc", &["--hostname", "h"], &["sh", "-c", script]);
    let (c2, strata, e2) = run_rm("strata", &["--hostname", "h"], &["sh", "-c", script]);
    assert_eq!((c1, c2), (0, 0), "runc: {e1} strata: {e2}");
    // strata also shows the (controller-less) cgroup2 hierarchy of a hybrid host under /sys/fs/cgroup.
    let strata: Vec<&str> = strata
        .lines()
        .filter(|l| !l.starts_with("/sys/fs/cgroup/unified "))
        .collect();
    let runc: Vec<&str> = runc.lines().collect();
    assert_eq!(strata, runc);
}

#[test]
fn docker_limits_reach_the_cgroup_and_hold() {
    let c = Container::start(
        "lim",
        "strata",
        &["--memory", "64m", "--cpus", "0.5", "--pids-limit", "20"],
        &["sleep", "60"],
    );
    let pid = c.pid();
    let mem = cgroup_dir(pid, "memory");
    let cpu = cgroup_dir(pid, "cpu");
    let pids = cgroup_dir(pid, "pids");
    if mem.join("memory.max").exists() {
        assert_eq!(read(&mem, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read(&cpu, "cpu.max"), "50000 100000");
    } else {
        assert_eq!(
            read(&mem, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(read(&pids, "pids.max"), "20");
    drop(c);

    // Behaviour: the memory limit OOM-kills (137, and Docker knows it was the OOM killer) …
    let c = Container::named("oom");
    let o = docker(&run_args(
        &[],
        &c.name,
        "strata",
        &["--memory", "32m", "--memory-swap", "32m"],
        &[
            "sh",
            "-c",
            // The hog is a child, and pid 1 stays a second after its death: Docker learns of the OOM from
            // an event the shim reads off the cgroup, which raced with the exit when pid 1 itself was
            // killed (OOMKilled false once in CI).
            "sh -c \"x=\\$(head -c 200000000 /dev/zero | tr '\\\\0' a); echo survived\"; rc=$?; sleep 1; exit $rc",
        ],
    ));
    assert_eq!(o.status.code(), Some(137), "{}{}", out(&o), err(&o));
    assert!(!out(&o).contains("survived"), "{}", out(&o));
    assert_eq!(c.inspect("{{.State.OOMKilled}}"), "true");
    drop(c);

    // … and the pids limit stops a fork bomb at 20 tasks.
    let (code, stdout, e) = run_rm(
        "strata",
        &["--pids-limit", "20"],
        &[
            "sh",
            "-c",
            // Only builtins after the bomb: with the limit reached, the shell cannot fork a `cat`.
            // The inner shell gives up ("can't fork") when the limit is reached.
            "sh -c 'for i in $(seq 1 60); do sleep 30 & done' 2>/dev/null; \
             f=/sys/fs/cgroup/pids/pids.current; [ -e $f ] || f=/sys/fs/cgroup/pids.current; \
             read n < $f; echo $n; exit 0",
        ],
    );
    assert_eq!(code, 0, "{e}");
    let current: u32 = stdout.trim().parse().unwrap_or_else(|_| panic!("{stdout}"));
    assert!((10..=20).contains(&current), "pids.current {current}");
}

#[test]
fn docker_tty_and_exec() {
    // -it: the container's stdio is a pty of its own devpts, sized and interactive.
    let (code, screen) = docker_in_pty(
        &format!("run -it --rm --runtime strata --network none {IMAGE} sh"),
        "echo at-$(tty); [ -t 1 ] && echo out-is-tty; exit 4\n",
    );
    assert_eq!(code, Some(4), "{screen}");
    assert!(
        screen.contains("at-/dev/pts/0\n") && screen.contains("out-is-tty\n"),
        "{screen}"
    );

    let c = Container::start("exec", "strata", &[], &["sleep", "60"]);
    // exec joins the container: same pid namespace (the command is pid 1 there), env, user, workdir.
    let o = docker(&[
        "exec",
        "-u",
        "1000",
        "-e",
        "A=b",
        "-w",
        "/tmp",
        &c.name,
        "sh",
        "-c",
        "echo $A; id -u; pwd; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert_eq!(out(&o), "b\n1000\n/tmp\nsleep 60 \n");
    let host_pid = c.pid();
    let o = docker_ok(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt",
    ]);
    let want = ["pid", "mnt"]
        .map(|ns| std::fs::read_link(format!("/proc/{host_pid}/ns/{ns}")).unwrap())
        .map(|p| p.display().to_string())
        .join("\n");
    assert_eq!(o.trim(), want);
    let (code, screen) = docker_in_pty(
        &format!("exec -it {} sh", c.name),
        "echo at-$(tty); exit 6\n",
    );
    assert_eq!(code, Some(6), "{screen}");
    assert!(screen.contains("at-/dev/pts/"), "{screen}");
    // A command that cannot run: Docker's code for it (126 from Docker 20.10's exec, whatever the
    // reason) and the runtime's reason in the message, as with runc.
    let r = Container::start("exec-runc", "runc", &[], &["sleep", "60"]);
    for (cmd, reason) in [
        ("/no/such/command", "no such file or directory"),
        ("/etc/passwd", "permission denied"),
    ] {
        let strata = docker(&["exec", &c.name, cmd]);
        let runc = docker(&["exec", &r.name, cmd]);
        // Docker's exec prints the runtime's error on stdout.
        let said = format!("{}{}", out(&strata), err(&strata));
        assert_eq!(strata.status.code(), runc.status.code(), "{cmd}: {said}");
        assert!(said.contains(reason), "{cmd}: {said}");
    }
}

#[test]
fn docker_stop_kill_pause() {
    let c = Container::start(
        "stop",
        "strata",
        &[],
        &[
            "sh",
            "-c",
            "trap 'echo got-TERM; exit 3' TERM; while true; do sleep 0.1; done",
        ],
    );
    docker_ok(&["pause", &c.name]);
    c.wait_status("paused");
    let state = read(&cgroup_dir(c.pid(), "freezer"), "freezer.state");
    assert_eq!(state, "FROZEN");
    docker_ok(&["unpause", &c.name]);
    c.wait_status("running");
    docker_ok(&["stop", "-t", "20", &c.name]);
    assert_eq!(c.exit_code(), 3);
    assert!(docker_ok(&["logs", &c.name]).contains("got-TERM"));
    drop(c);

    // A pid 1 without a TERM handler ignores it: stop escalates to SIGKILL after the timeout.
    let c = Container::start("ignore", "strata", &[], &["sleep", "60"]);
    docker_ok(&["stop", "-t", "1", &c.name]);
    assert_eq!(c.exit_code(), 137);
    drop(c);

    let c = Container::start("kill", "strata", &[], &["sleep", "60"]);
    docker_ok(&["kill", "-s", "USR1", &c.name]);
    // sleep has no USR1 handler but is pid 1 of its namespace: the signal is ignored, it runs on.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
    docker_ok(&["kill", &c.name]);
    c.wait_status("exited");
    assert_eq!(c.exit_code(), 137);
}

#[test]
fn docker_stats_and_update_show_real_numbers() {
    let c = Container::start(
        "stats",
        "strata",
        &["--memory", "64m"],
        &[
            "sh",
            "-c",
            "x=$(head -c 20000000 /dev/zero | tr '\\0' a); while true; do :; done",
        ],
    );
    // Give the shell time to build its 20 MB string and spin.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let s = docker_ok(&["stats", "--no-stream", "--format", "{{json .}}", &c.name]);
    let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
    let mem = v["MemUsage"].as_str().unwrap();
    let (used, limit) = mem.split_once(" / ").unwrap();
    assert!(parse_size(used) > 15.0 * 1024.0 * 1024.0, "{v}");
    assert_eq!(parse_size(limit), 64.0 * 1024.0 * 1024.0, "{v}");
    let cpu: f64 = v["CPUPerc"]
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(cpu > 30.0, "a busy loop shows {cpu}% CPU: {v}");
    assert!(
        v["PIDs"].as_str().unwrap().parse::<u32>().unwrap() >= 1,
        "{v}"
    );

    // docker update goes through `strata update`.
    docker_ok(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--pids-limit",
        "30",
        &c.name,
    ]);
    let pid = c.pid();
    let mem = cgroup_dir(pid, "memory");
    let file = if mem.join("memory.max").exists() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(read(&mem, file), (128u64 << 20).to_string());
    assert_eq!(read(&cgroup_dir(pid, "pids"), "pids.max"), "30");
}

#[test]
fn docker_rm_leaves_nothing_behind() {
    for _ in 0..3 {
        let c = Container::start("gone", "strata", &["--memory", "64m"], &["sleep", "60"]);
        let id = c.id.clone().unwrap();
        assert!(
            !leftovers(&id).is_empty(),
            "a running container has a cgroup and mounts"
        );
        docker_ok(&["rm", "-f", &c.name]);
        let left = leftovers(&id);
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    // --rm: Docker deletes the container when it exits.
    let dir = tempfile::tempdir().unwrap();
    let cidfile = dir.path().join("cid");
    let (code, _, e) = run_rm(
        "strata",
        &["--memory", "64m", "--cidfile", cidfile.to_str().unwrap()],
        &["true"],
    );
    assert_eq!(code, 0, "{e}");
    let id = std::fs::read_to_string(&cidfile).unwrap();
    let left = leftovers(id.trim());
    assert!(left.is_empty(), "left behind: {left:?}");
}
