//! One test per isolation property of `strata run` with default namespaces and a bind rootfs.

mod common;
use common::Env;

#[test]
fn hostname_differs_from_the_host() {
    let env = Env::new();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let name = common::unique("h");
    let out = env.sh(&["--hostname", &name], "hostname");
    assert_eq!(out.trim(), name);
    assert_ne!(out.trim(), host);
    assert_eq!(env.sh(&[], "hostname").trim(), "strata");
}

#[test]
fn only_loopback_in_the_network_namespace() {
    let env = Env::new();
    let out = env.sh(&[], "ls /sys/class/net; ip -o link show lo");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("lo"), "{out}");
    assert!(
        lines.next().is_some_and(|l| l.contains("UP")),
        "loopback is not up: {out}"
    );
    assert!(lines.next().is_none(), "more than lo: {out}");
    // With a FUSE rootfs strata brings loopback up from a process that also runs the server's threads.
    let out = env.sh(&["--fs", "fuse"], "ip -o link show lo");
    assert!(
        out.contains("UP"),
        "loopback is not up under --fs fuse: {out}"
    );
    // Whoever makes the namespace (strata's set-up helper by default, strata after the clone, clone3)
    // and whoever mounts the kernel overlay (the helper, detached, or the container process), the
    // container gets the same: only lo, up, over an overlay root.
    for extra in [&[][..], &["--no-setup-helper"], &["--netns-in-clone"]] {
        let args = [&["--fs", "kernel"][..], extra].concat();
        let out = env.sh(
            &args,
            "echo $(ls /sys/class/net) $(cat /sys/class/net/lo/flags); \
             grep ' / / ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1",
        );
        assert_eq!(out, "lo 0x9\noverlay\n", "with {extra:?}");
    }
}

#[test]
fn command_is_pid_1() {
    let env = Env::new();
    assert_eq!(env.sh(&[], "echo $$").trim(), "1");
    // Its first child gets pid 2, as under runc: the task that detached the old root during set-up
    // took a spare pid (and it is gone).
    assert_eq!(env.sh(&[], "sleep 0 & echo $!").trim(), "2");
    // Only the container's processes are visible.
    let ps = env.sh(&[], "ls /proc | grep -c '^[0-9]'");
    assert!(ps.trim().parse::<u32>().unwrap() <= 3, "{ps}");
}

#[test]
fn host_mounts_are_invisible_and_rootfs_is_pivoted() {
    let env = Env::new();
    let out = env.sh(&[], "cat /proc/self/mountinfo");
    let tmp = env.tmp.path().to_string_lossy().into_owned();
    for line in out.lines() {
        let mp = line.split(' ').nth(4).unwrap();
        assert!(
            ["/", "/proc", "/dev", "/sys"]
                .iter()
                .any(|p| mp == *p || mp.starts_with(&format!("{p}/")) || *p == "/" && mp == "/"),
            "unexpected mount in the container: {line}"
        );
        assert!(!mp.contains(&tmp), "host path visible: {line}");
    }
    assert!(out.lines().count() < 40, "too many mounts: {out}");
    assert_eq!(
        common::host_mounts_mentioning(&tmp),
        0,
        "the container's mounts leaked into the host"
    );
    // The old root is detached: nothing of the host's / is reachable.
    let ls = env.sh(&[], "ls /");
    assert!(!ls.contains("work") && ls.contains("bin"), "{ls}");
}

#[test]
fn proc_sys_is_read_only_and_paths_are_masked() {
    let env = Env::new();
    let out = env.sh(&[], "echo 1 > /proc/sys/kernel/ns_last_pid && echo WROTE || echo DENIED; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; touch /sys/x 2>/dev/null && echo SYSRW || echo SYSRO");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["DENIED", "0", "0", "SYSRO"], "{out}");
}

#[test]
fn dev_has_the_standard_nodes() {
    let env = Env::new();
    let out = env.sh(&[], "ls /dev; readlink /dev/fd; readlink /dev/ptmx; echo x > /dev/null && head -c 4 /dev/zero | wc -c");
    for n in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd",
        "stdin", "stdout", "stderr",
    ] {
        assert!(out.lines().any(|l| l == n), "/dev/{n} missing: {out}");
    }
    assert!(
        out.contains("/proc/self/fd") && out.contains("pts/ptmx") && out.trim_end().ends_with('4'),
        "{out}"
    );
}

#[test]
fn capabilities_are_dockers_default_set() {
    let env = Env::new();
    let caps = |extra: &[&str]| env.sh(extra, "grep -E '^Cap(Eff|Bnd|Inh|Amb)' /proc/self/status");
    let out = caps(&[]);
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    assert!(
        out.contains("CapInh:\t0000000000000000") && out.contains("CapAmb:\t0000000000000000"),
        "{out}"
    );
    // --cap-add NET_ADMIN (bit 12), --cap-drop CHOWN (bit 0)
    let out = caps(&["--cap-add", "NET_ADMIN", "--cap-drop", "chown"]);
    assert!(out.contains("CapEff:\t00000000a80435fa"), "{out}");
    let out = caps(&["--cap-drop", "ALL"]);
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    // A non-root user gets no effective capabilities.
    let out = caps(&["--user", "1000"]);
    assert!(
        out.contains("CapEff:\t0000000000000000") && out.contains("CapBnd:\t00000000a80425fb"),
        "{out}"
    );
}

#[test]
fn no_new_privs_and_seccomp_filter() {
    let env = Env::new();
    let out = env.sh(&[], "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; mount -t tmpfs x /tmp 2>&1; unshare -n true 2>&1; echo done");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        out.contains("Operation not permitted") || out.contains("permission denied"),
        "mount/unshare not refused: {out}"
    );
    assert!(out.contains("done"));
    // --security-opt seccomp=unconfined turns the filter off (for measuring its cost), nothing else.
    let out = env.sh(
        &["--security-opt", "seccomp=unconfined"],
        "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    );
    assert_eq!(out, "NoNewPrivs:\t1\nSeccomp:\t0\n");
}

#[test]
fn user_env_workdir_and_read_only() {
    let env = Env::new();
    let out = env.sh(
        &[
            "--user",
            "user",
            "--env",
            "FOO=bar",
            "--workdir",
            "/home/user",
        ],
        "id -u; id -g; id -G; echo $FOO; pwd; echo $HOSTNAME",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["1000", "1000", "1000 2000", "bar", "/home/user", "strata"],
        "{out}"
    );
    let out = env.sh(&["--user", "1234:99"], "id -u; id -g");
    assert_eq!(out, "1234\n99\n");
    let out = env.sh(
        &["--read-only"],
        "touch /x 2>/dev/null && echo RW || echo RO; touch /dev/shm/x && echo SHM",
    );
    assert_eq!(out, "RO\nSHM\n");
    // HOME comes from the container's passwd, read as root as runc does: also when only root may
    // read it (and a user given by id, whose name strata never needs).
    let out = env.sh(&["--user", "1000"], "echo $HOME");
    assert_eq!(out, "/home/user\n");
    std::fs::set_permissions(
        env.rootfs.join("etc/passwd"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for fs in ["bind", "kernel", "fuse"] {
        let out = env.sh(
            &["--user", "1000", "--fs", fs],
            "echo $HOME; cat /etc/passwd 2>&1 >/dev/null | wc -l",
        );
        assert_eq!(
            out, "/home/user\n1\n",
            "--fs {fs}: HOME, and passwd unreadable to the user"
        );
    }
    let bad = env.run(&["--rm", "--user", "nobody-here"], &["true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        common::stderr(&bad).contains("nobody-here"),
        "{}",
        common::stderr(&bad)
    );
}

#[test]
fn cgroup_namespace_is_rooted_at_the_containers_cgroup() {
    let env = Env::new();
    let out = env.sh(&[], "cat /proc/self/cgroup");
    assert!(
        !out.is_empty() && out.lines().all(|l| l.ends_with(":/")),
        "{out}"
    );
    let host = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(host.lines().any(|l| !l.ends_with(":/")) || host.lines().count() == 1);
}

#[test]
fn the_command_runs_with_stratas_cpu_mask_not_the_start_up_pin() {
    // strata runs its child's set-up pinned to another CPU than its own (process::OtherCpu) and the
    // child takes strata's mask back before it joins its cgroup: the command must see the host's
    // mask, or the one --cpuset gives it.
    let env = Env::new();
    let host = common::cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    assert_eq!(
        common::cpus_allowed(&env.sh(&[], "cat /proc/self/status")),
        host
    );
    let pinned = env.sh(&["--cpuset", "0"], "cat /proc/self/status");
    assert_eq!(common::cpus_allowed(&pinned), "0");
}

#[test]
fn shared_and_joined_namespaces() {
    let env = Env::new();
    let host_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = env.sh(&["--share", "net"], "readlink /proc/self/ns/net");
    assert_eq!(out.trim(), host_net);
    let out = env.sh(
        &["--join", "uts=/proc/self/ns/uts", "--hostname", "ignored"],
        "readlink /proc/self/ns/uts",
    );
    let host_uts = std::fs::read_link("/proc/self/ns/uts")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(out.trim(), host_uts);
}

#[test]
fn userns_maps_root_to_an_unprivileged_range_with_an_idmapped_rootfs() {
    let env = Env::new();
    let out = env.sh(
        &["--userns"],
        "id -u; cat /proc/self/uid_map; stat -c '%u %g' /bin/busybox; touch /tmp/by-root && stat -c %u /tmp/by-root; grep CapEff /proc/self/status",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map[0], "0");
    assert_ne!(map[1], "0", "container root is host root");
    // Host-root files appear owned by the container's root, and what it writes is owned by host root on
    // disk (the idmapped mount translates both ways).
    assert_eq!(lines[2], "0 0");
    assert_eq!(lines[3], "0");
    assert!(lines[4].ends_with("00000000a80425fb"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(env.rootfs.join("tmp/by-root"))
            .unwrap()
            .uid(),
        0
    );
    // The host sees the container's processes under the mapped uid.
    let name = common::unique("uns");
    let d = env.run(
        &["-d", "--userns", "--name", &name],
        &["/bin/sleep", "1000"],
    );
    assert!(d.status.success(), "{}", common::stderr(&d));
    let pid = common::wait_running(&env, &name)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        !uid_line.split_whitespace().nth(1).unwrap().eq("0"),
        "{uid_line}"
    );
    let out = env.exec_sh(&name, "id -u; readlink /proc/self/ns/user");
    let want = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_eq!(
        common::stdout(&out),
        format!("0\n{}\n", want.display()),
        "{}",
        common::stderr(&out)
    );
    assert!(
        env.strata()
            .args(["rm", "-f", &name])
            .status()
            .unwrap()
            .success()
    );
    // Kernel overlay in the user namespace: idmapped lower layers, the upper owned by the container's root.
    let name = common::unique("unsk");
    let out = env.run(
        &["--userns", "--fs", "kernel", "--name", &name],
        &["/bin/sh", "-c", "stat -c '%u' /bin/busybox; echo x > /tmp/k && stat -c %u /tmp/k; rm /etc/group && ls /etc"],
    );
    assert_eq!(
        common::stdout(&out),
        "0\n0\nnot-executable\npasswd\n",
        "{}",
        common::stderr(&out)
    );
    let upper = std::fs::metadata(env.state.join(&name).join("upper/tmp/k")).unwrap();
    assert_ne!(upper.uid(), 0, "the upper layer is written as host root");
    assert!(env.rootfs.join("etc/group").exists());
    assert!(env.strata().args(["rm", &name]).status().unwrap().success());
    env.assert_nothing_left();
}

/// `--userns --fs fuse`: the FUSE rootfs is mounted by the container's root inside its user namespace and
/// served from outside; ids read the same as with `--userns --fs kernel` (idmapped lowers), and what the
/// container writes lands in the upper layer owned by the mapped host ids.
#[test]
fn userns_with_fuse_rootfs_maps_ids_like_kernel_overlay() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    std::os::unix::fs::chown(env.rootfs.join("home/user"), Some(1000), Some(1000)).unwrap();
    let script = "id -u; cat /proc/self/uid_map; stat -c '%u %g' /bin/busybox /etc/passwd /home/user; \
                  echo x > /by-root && mkdir /dir-by-root && echo y >> /etc/passwd && stat -c '%u %g' /by-root /dir-by-root /etc/passwd; \
                  grep ' / ' /proc/mounts | cut -d' ' -f3";
    let user_script = "id -u; echo u > /home/user/f && stat -c '%u %g' /home/user/f";
    let mut seen = Vec::new();
    for fs in ["fuse", "kernel"] {
        let name = common::unique(&format!("rtg-uns-{fs}"));
        let out = env.run(
            &["--userns", "--fs", fs, "--name", &name],
            &["/bin/sh", "-c", script],
        );
        assert!(out.status.success(), "{fs}: {}", common::stderr(&out));
        let text = common::stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 9, "{fs}: {text}");
        assert_eq!(lines[0], "0", "{fs}: not root inside");
        let map: Vec<u32> = lines[1]
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(map[0], 0);
        let host = map[1];
        assert_ne!(host, 0, "{fs}: container root is host root");
        // Image files: root's stay root's, the non-root user's keep their owner.
        assert_eq!(&lines[2..5], ["0 0", "0 0", "1000 1000"], "{fs}");
        // What root writes (new file, new directory, copied-up file) is root's inside…
        assert_eq!(&lines[5..8], ["0 0", "0 0", "0 0"], "{fs}");
        let want_fs = if fs == "fuse" {
            "fuse.strata-overlayfs"
        } else {
            "overlay"
        };
        assert_eq!(lines[8], want_fs);
        // …and the mapped host uid's in the upper layer.
        let upper = env.state.join(&name).join("upper");
        for f in ["by-root", "dir-by-root", "etc/passwd"] {
            let m = std::fs::metadata(upper.join(f)).unwrap();
            assert_eq!((m.uid(), m.gid()), (host, host), "{fs}: upper/{f}");
        }
        assert!(env.strata().args(["rm", &name]).status().unwrap().success());

        // A non-root user of the image writes as its mapped host uid.
        let name = common::unique(&format!("rtg-unsu-{fs}"));
        let out = env.run(
            &[
                "--userns",
                "--fs",
                fs,
                "--user",
                "1000:1000",
                "--name",
                &name,
            ],
            &["/bin/sh", "-c", user_script],
        );
        assert_eq!(
            common::stdout(&out),
            "1000\n1000 1000\n",
            "{fs}: {}",
            common::stderr(&out)
        );
        let m = std::fs::metadata(env.state.join(&name).join("upper/home/user/f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (host + 1000, host + 1000), "{fs}");
        assert!(env.strata().args(["rm", &name]).status().unwrap().success());
        seen.push(lines[..8].join("\n"));
    }
    assert_eq!(seen[0], seen[1], "fuse and kernel overlay differ");
    // The lower layer is untouched.
    let passwd = std::fs::read_to_string(env.rootfs.join("etc/passwd")).unwrap();
    assert!(!passwd.ends_with("y\n"), "the lower layer was written");
    assert_eq!(common::host_mounts_mentioning("rtg-uns"), 0);
    env.assert_nothing_left();
}

/// Whether /sys/fs/cgroup is a cgroup2 mount (a pure v2 host) rather than v1 hierarchies.
fn cgroup_is_v2() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 "))
}

/// /sys/fs/cgroup shows the container's own cgroups (cgroup namespace root), read-only, as in Docker —
/// with and without a user namespace (where v1 hierarchies are bound instead of mounted).
#[test]
fn sys_fs_cgroup_is_the_containers_own_cgroup_read_only() {
    let env = Env::new();
    let v2 = cgroup_is_v2();
    let (limit_file, want) = if v2 {
        ("/sys/fs/cgroup/memory.max", "67108864")
    } else {
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "67108864")
    };
    let script = format!(
        "cat {limit_file}; grep -c . /sys/fs/cgroup/{procs}; \
         if echo 1 > {limit_file}; then echo writable; fi; if touch /sys/fs/cgroup/x; then echo writable; fi; \
         grep ' /sys/fs/cgroup' /proc/mounts | grep -vc ' ro,'",
        procs = if v2 {
            "cgroup.procs"
        } else {
            "pids/cgroup.procs"
        }
    );
    for extra in [&[][..], &["--userns"][..]] {
        let mut args = vec!["--memory", "64m"];
        args.extend_from_slice(extra);
        let out = env.run(
            &[&["--rm"][..], &args[..]].concat(),
            &["/bin/sh", "-c", &script],
        );
        let text = common::stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some(want),
            "{extra:?}: {text}\n{}",
            common::stderr(&out)
        );
        // Only the container's processes (sh and grep) are in its cgroup: the view is rooted there.
        assert_eq!(lines.get(1).copied(), Some("2"), "{extra:?}: {text}");
        assert!(!text.contains("writable"), "{extra:?}: {text}");
        // Every mount at or under /sys/fs/cgroup is read-only.
        assert_eq!(lines.get(2).copied(), Some("0"), "{extra:?}: {text}");
    }
    env.assert_nothing_left();
}

/// The limits are in force at the command's first instruction: strata writes them while the container's
/// process, already in its cgroup, mounts its cgroupfs, and the process waits for them before it execs.
/// The command reads them at once, several times over (a missing wait would show as a default value).
#[test]
fn every_limit_is_in_force_when_the_command_starts() {
    let env = Env::new();
    let v2 = cgroup_is_v2();
    let (files, want) = if v2 {
        (
            "memory.max cpu.max pids.max",
            "67108864\n50000 100000\n20\n",
        )
    } else {
        (
            "memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us pids/pids.max devices/devices.list",
            // Docker's default device rules (a new group would show its parent's "a *:* rwm").
            "67108864\n50000\n20\nc *:* m\n",
        )
    };
    let script = format!("cd /sys/fs/cgroup && for f in {files}; do head -n1 $f; done");
    for _ in 0..10 {
        let out = env.run(
            &["--rm", "--memory", "64m", "--cpus", "0.5", "--pids", "20"],
            &["/bin/sh", "-c", &script],
        );
        assert_eq!(common::stdout(&out), want, "{}", common::stderr(&out));
    }
    env.assert_nothing_left();
}

/// A cgroup2 directory of this test's own under the hybrid host's unified mount, removed on drop.
struct UnifiedTestCgroup(std::path::PathBuf);

impl Drop for UnifiedTestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn sharing_the_hosts_cgroup_namespace_binds_the_containers_cgroups() {
    use strata_runtime::cgroups::{CgroupMode, detect};
    let env = Env::new();
    let mode = detect();
    // On a hybrid host strata makes no unified cgroup: the container keeps the one strata runs in, here
    // this test's own, and /sys/fs/cgroup/unified must show that one. A fresh cgroup2 mount from the
    // host's cgroup namespace would show the host's root instead (and re-apply its mount options
    // host-wide).
    let unified = (mode == CgroupMode::Hybrid).then(|| {
        let dir =
            std::path::Path::new("/sys/fs/cgroup/unified").join(common::unique("strata-test"));
        std::fs::create_dir(&dir).expect("a test cgroup under /sys/fs/cgroup/unified");
        UnifiedTestCgroup(dir)
    });
    let limit_file = if mode == CgroupMode::V2 {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let script = format!(
        "cat {limit_file}; grep ' /sys/fs/cgroup' /proc/self/mountinfo; \
         touch /sys/fs/cgroup/x 2>/dev/null && echo writable; true"
    );
    let mut base = env.strata();
    base.args(["run", "--rootfs"])
        .arg(&env.rootfs)
        .args(["--rm", "--share", "cgroup", "--memory", "64m", "--"])
        .args(["/bin/sh", "-c", &script]);
    // strata itself joins the test cgroup first (a shell that moves itself, then execs strata).
    let mut cmd = std::process::Command::new("/bin/sh");
    let join = match &unified {
        Some(u) => format!("echo $$ > {}/cgroup.procs && ", u.0.display()),
        None => String::new(),
    };
    cmd.arg("-c")
        .arg(format!("{join}exec \"$@\""))
        .arg("sh")
        .arg(base.get_program())
        .args(base.get_args());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?} {text} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The memory files are the container's own cgroup's, not the host's root.
    assert_eq!(text.lines().next(), Some("67108864"), "{text}");
    assert!(
        !text.contains("writable"),
        "/sys/fs/cgroup is writable: {text}"
    );
    // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT …": the root of each cgroup2 mount is a cgroup of
    // the container's (a bind), never the host's "/".
    let cgroup2_roots: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| l.contains(" - cgroup2 "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.get(3)?, *f.get(4)?))
        })
        .collect();
    match (&unified, mode) {
        (Some(u), _) => {
            let want = format!("/{}", u.0.file_name().unwrap().to_string_lossy());
            assert_eq!(
                cgroup2_roots,
                vec![(want.as_str(), "/sys/fs/cgroup/unified")],
                "{text}"
            );
        }
        (None, CgroupMode::V2) => {
            assert_eq!(cgroup2_roots.len(), 1, "{text}");
            assert!(
                cgroup2_roots[0]
                    .0
                    .starts_with(&format!("/{}/", env.cgroup_parent)),
                "{text}"
            );
        }
        (None, _) => assert!(cgroup2_roots.is_empty(), "{text}"),
    }
}
