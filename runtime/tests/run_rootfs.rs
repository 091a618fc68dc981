//! Rootfs modes: strata-overlayfs (FUSE) inside the container's mount namespace, and images from the store.

mod common;
use common::Env;

#[test]
fn fuse_rootfs_is_absent_from_the_host_and_has_a_private_upper() {
    let env = Env::new();
    let name = common::unique("fuse");
    let out = env.run(
        &["--fs", "fuse", "--name", &name],
        &[
            "/bin/sh",
            "-c",
            "grep ' / ' /proc/self/mountinfo; echo new > /created; rm /etc/group; ls /etc",
        ],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    assert!(text.contains("fuse.strata-overlayfs"), "{text}");
    assert!(!text.contains("group\n"), "{text}");
    assert_eq!(
        common::host_mounts_mentioning(&env.tmp.path().to_string_lossy()),
        0
    );
    // (Other tests may have strata-overlayfs mounts of their own on the host: look for this container's.)
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!("strata-{name}"))
    );
    assert!(env.rootfs.join("etc/group").exists() && !env.rootfs.join("created").exists());
    assert_eq!(
        std::fs::read_to_string(env.state.join(&name).join("upper/created")).unwrap(),
        "new\n"
    );
    assert!(env.strata().args(["rm", &name]).status().unwrap().success());
    env.assert_nothing_left();
}

#[test]
fn fuse_container_seen_from_the_host_while_running() {
    let env = Env::new();
    let name = common::unique("fusebg");
    let out = env.run(
        &["-d", "--fs", "fuse", "--name", &name],
        &["/bin/sleep", "1000"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let st = common::wait_running(&env, &name);
    let pid = st["pid"].as_i64().unwrap();
    // The host's table has no FUSE mount; the container's does.
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!("strata-{name}"))
    );
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        theirs
            .lines()
            .next()
            .is_some_and(|l| l.contains(&format!("fuse.strata-overlayfs strata-{name} "))),
        "{theirs}"
    );
    // exec works through the FUSE rootfs.
    let out = env
        .strata()
        .args(["exec", &name, "--", "/bin/cat", "/etc/passwd"])
        .output()
        .unwrap();
    assert!(
        common::stdout(&out).starts_with("root:"),
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
    env.assert_nothing_left();
}

#[test]
fn image_runs_with_its_config_on_every_backend() {
    let env = Env::new();
    let store = env.tmp.path().join("store");
    let archive = env.tmp.path().join("bb.tar");
    let st = |args: &[&str]| {
        let out = env
            .strata()
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
        out
    };
    st(&[
        "image",
        "build-test",
        "busybox",
        "--out",
        archive.to_str().unwrap(),
    ]);
    st(&["image", "import", archive.to_str().unwrap()]);
    for fs in ["fuse", "kernel"] {
        let out = st(&[
            "run",
            "--rm",
            "--image",
            "strata-busybox",
            "--fs",
            fs,
            "--",
            "/bin/sh",
            "-c",
            "echo $STRATA_IMAGE; ls /bin/busybox",
        ]);
        assert_eq!(common::stdout(&out), "busybox\n/bin/busybox\n", "{fs}");
    }
    // Without a command the image's Cmd (/bin/sh) runs; stdin is empty, so it exits 0.
    let out = env
        .strata()
        .arg("--store")
        .arg(&store)
        .args(["run", "--rm", "--image", "strata-busybox"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    // fuse is the default for images.
    let name = common::unique("img");
    st(&[
        "run",
        "--name",
        &name,
        "--image",
        "strata-busybox",
        "--",
        "true",
    ]);
    let ps = st(&["ps", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let me = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == name.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (me["fs"].as_str(), me["image"].as_str()),
        (Some("fuse"), Some("strata-busybox"))
    );
    st(&["rm", &name]);
    let missing = env
        .strata()
        .arg("--store")
        .arg(&store)
        .args(["run", "--rm", "--image", "nope", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(125));
    assert_eq!(common::stderr(&missing).lines().count(), 1);
    env.assert_nothing_left();
}

#[test]
fn rm_kernel_overlay_is_volatile_and_a_kept_upper_is_not() {
    let env = Env::new();
    let root_line = ["/bin/sh", "-c", "grep ' / / ' /proc/self/mountinfo"];
    // With --rm the upper layer is thrown away, so the overlay need not be synced at unmount (which would
    // make the container's exit wait for a syncfs of the whole host filesystem).
    let out = env.run(&["--rm", "--fs", "kernel"], &root_line);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let line = common::stdout(&out);
    assert!(
        line.contains(" overlay ") && line.contains("volatile"),
        "{line}"
    );
    // A container whose upper is kept after exit keeps overlay's crash-safe default.
    let name = common::unique("keep");
    let out = env.run(&["--fs", "kernel", "--name", &name], &root_line);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let line = common::stdout(&out);
    assert!(
        line.contains(" overlay ") && !line.contains("volatile"),
        "{line}"
    );
    assert!(env.strata().args(["rm", &name]).status().unwrap().success());
    env.assert_nothing_left();
}

#[test]
fn fuse_server_threads_serve_the_container_from_every_cpu() {
    // strata starts its FUSE server's threads pinned next to the container's child while that mounts
    // its rootfs (process::Spawned::serve_fuse), then spreads them over its own CPUs: each thread takes
    // the mask back at its next request. Once the container has made requests, a thread serving them
    // must have strata's mask, and no thread may be left with anything else than that or one CPU.
    let env = Env::new();
    let host = common::cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    let name = common::unique("fusecpu");
    let out = env.run(
        &["-d", "--fs", "fuse", "--name", &name],
        &["/bin/sleep", "1000"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let st = common::wait_running(&env, &name);
    let monitor = st["monitor_pid"].as_i64().unwrap();
    for _ in 0..3 {
        let out = env
            .strata()
            .args(["exec", &name, "--", "/bin/ls", "-lR", "/bin", "/etc"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let mut masks = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{monitor}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // The workers; fuser-bg only waits for them.
        if comm.starts_with("fuser-") && comm.trim() != "fuser-bg" {
            masks.push(common::cpus_allowed(
                &std::fs::read_to_string(dir.join("status")).unwrap(),
            ));
        }
    }
    assert!(
        !masks.is_empty(),
        "no FUSE server threads in strata {monitor}"
    );
    assert!(
        masks.contains(&host),
        "no server thread has strata's CPUs ({host}): {masks:?}"
    );
    assert!(
        masks.iter().all(|m| *m == host || m.parse::<u32>().is_ok()),
        "{masks:?}"
    );
    assert!(
        env.strata()
            .args(["rm", "-f", &name])
            .status()
            .unwrap()
            .success()
    );
    env.assert_nothing_left();
}
