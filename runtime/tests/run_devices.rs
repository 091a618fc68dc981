//! Device access in `strata run` containers: Docker's default rules. The standard nodes open; any other
//! device node can be made (CAP_MKNOD stays, as under Docker) but not opened — else root in a container
//! could make a node for the host's disk and read it. Checked on this host's cgroup mode (the v1 devices
//! controller on a hybrid host) and on strata's cgroup v2 path (an eBPF device program), which runs in a
//! private mount namespace whose /sys/fs/cgroup is the host's cgroup2 hierarchy, so strata detects v2.

mod common;
use common::Env;
use std::process::{Command, Stdio};

/// Opens /dev/null and /dev/zero, makes a node for /dev/fuse (10:229) and tries to open it.
const SCRIPT: &str = "echo x > /dev/null && head -c3 /dev/zero | wc -c; \
    rm -f /tmp/fuse; mknod /tmp/fuse c 10 229 && echo made; \
    if (exec 3<>/tmp/fuse) 2>/tmp/err; then echo opened; else cat /tmp/err; fi";

/// The node the script opens must be one the host can open, so a refusal comes from the rules.
fn assert_host_opens_dev_fuse() {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .expect("this test needs /dev/fuse (10:229) openable on the host");
}

fn assert_refused(out: &str, what: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"3"), "{what}: /dev/zero: {out}");
    assert_eq!(lines.get(1), Some(&"made"), "{what}: mknod: {out}");
    assert!(
        lines
            .get(2)
            .is_some_and(|l| l.contains("Operation not permitted")),
        "{what}: a device outside the defaults was opened or failed otherwise: {out}"
    );
}

#[test]
fn a_container_opens_only_the_default_devices() {
    assert_host_opens_dev_fuse();
    let env = Env::new();
    for fs in ["bind", "kernel", "fuse"] {
        let out = env.sh(&["--fs", fs], SCRIPT);
        assert_refused(&out, fs);
    }
    env.assert_nothing_left();
}

/// `strata` run in a private mount namespace with the host's cgroup2 hierarchy bound on /sys/fs/cgroup.
/// With `bpffs`, a bpffs of its own is mounted on /sys/fs/bpf and the container runs twice, the pins
/// strata left listed in between.
fn run_on_v2(env: &Env, extra: &[&str], script: &str, bpffs: bool) -> std::process::Output {
    let cgroup2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (post.split_whitespace().next()? == "cgroup2").then(|| pre.split(' ').nth(4))?
        })
        .expect("this test needs a cgroup2 mount (none in /proc/self/mountinfo)")
        .to_string();
    let strata = env.strata();
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(if bpffs {
            "mount --bind \"$0\" /sys/fs/cgroup && mount -t bpf bpf /sys/fs/bpf && \"$@\" && \
             ls /sys/fs/bpf/strata && exec \"$@\""
        } else {
            "mount --bind \"$0\" /sys/fs/cgroup && exec \"$@\""
        })
        .arg(&cgroup2)
        .arg(strata.get_program())
        .args(strata.get_args())
        .args(["run", "--rm", "--rootfs"])
        .arg(&env.rootfs)
        .args(extra)
        .args(["--", "/bin/sh", "-c", script]);
    for (k, v) in strata.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(Stdio::null())
        .output()
        .expect("this test needs unshare (util-linux)")
}

#[test]
fn the_v2_path_confines_devices_with_an_ebpf_program() {
    assert_host_opens_dev_fuse();
    let env = Env::new();
    for fs in ["kernel", "fuse"] {
        let o = run_on_v2(
            &env,
            &["--fs", fs],
            &format!("{SCRIPT}; grep ^0:: /proc/self/cgroup"),
            false,
        );
        assert!(o.status.success(), "{fs}: {}", common::stderr(&o));
        let out = common::stdout(&o);
        assert_refused(&out, &format!("v2 {fs}"));
        assert_eq!(
            out.lines().nth(3),
            Some("0::/"),
            "v2 {fs}: the cgroup namespace is not the container's cgroup: {out}"
        );
    }
    // A FUSE rootfs in a user namespace: the child opens /dev/fuse itself (the mount must be made in the
    // opener's user namespace) before it joins its cgroup through cgroup.procs, and only then makes its
    // cgroup namespace. mknod is not allowed in a user namespace, so only the standard nodes are tried.
    let o = run_on_v2(
        &env,
        &["--fs", "fuse", "--userns"],
        "head -c3 /dev/zero | wc -c; grep ^0:: /proc/self/cgroup",
        false,
    );
    assert!(o.status.success(), "v2 fuse userns: {}", common::stderr(&o));
    assert_eq!(common::stdout(&o), "3\n0::/\n");
    env.assert_nothing_left();
}

/// Loading a device program costs far more than attaching one: strata pins the programs it loads in the
/// host's bpffs (named by their instructions) and the next container with the same rules attaches the
/// pinned one. Both containers are confined alike.
#[test]
fn the_v2_device_program_is_pinned_and_reused() {
    assert_host_opens_dev_fuse();
    let env = Env::new();
    let o = run_on_v2(&env, &["--fs", "kernel"], SCRIPT, true);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let out = common::stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_refused(&lines[..3].join("\n"), "first container");
    assert!(
        lines[3].starts_with("dev-") && lines[3].len() == 4 + 32,
        "one pinned program named by its hash expected: {out}"
    );
    assert_refused(&lines[4..].join("\n"), "second container (pinned program)");
    env.assert_nothing_left();
}
