//! podman, unchanged, driving this tree's binaries: containers-storage's overlay driver with
//! strata-overlayfs as its mount_program (`podman run` and a `podman build` whose RUN step writes,
//! deletes and renames files), and `podman --runtime <strata>` on the test image. Each test has a
//! private podman (storage, run root, configs) that is removed afterwards.

mod podman_support;

use podman_support::{Podman, strata_overlayfs};

const IMAGE: &str = "localhost/strata-busybox:latest";

/// The root mount's line of /proc/self/mountinfo as seen inside the container.
const ROOT_MOUNT: &str = "grep ' / / ' /proc/self/mountinfo";

fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "stk-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn podman_run_on_strata_overlayfs_mount_program() {
    let p = Podman::new(Some(&strata_overlayfs()), "runc");
    p.load_busybox();
    let name = unique("run");
    let out = p.ok(&[
        "run",
        "--rm",
        "--name",
        &name,
        IMAGE,
        "/bin/sh",
        "-c",
        &format!(
            "{ROOT_MOUNT}; echo written > /tmp/new; cat /tmp/new; \
             mkdir /moved && mv /bin/true /moved/true && mv /bin/cat /moved/cat && /moved/cat /tmp/new; \
             rm /bin/ls; test -e /bin/ls || echo ls-gone; /moved/true && echo true-runs"
        ),
    ]);
    let mut lines = out.lines();
    let root = lines.next().unwrap_or_default();
    assert!(
        root.contains("fuse.strata-overlayfs"),
        "the container's root is not strata-overlayfs: {out}"
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["written", "written", "ls-gone", "true-runs"],
        "{out}"
    );
    // --rm removed the container and with it the mount.
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.contains(p.dir.path().to_str().unwrap()) && l.contains("merged")),
        "a container rootfs is still mounted after podman run --rm"
    );
}

#[test]
fn podman_build_on_strata_overlayfs_mount_program() {
    let p = Podman::new(Some(&strata_overlayfs()), "runc");
    p.load_busybox();
    let ctx = p.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // Writes, deletes and renames of new files, of image files, and of hard-linked busybox applets.
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {IMAGE}\n\
             RUN mkdir -p /data/sub && echo one > /data/a && echo two > /data/b && echo three > /data/sub/c \
             && rm /data/b && mv /data/a /data/renamed && mv /data/sub /data/sub.moved \
             && rm /etc/os-release && mv /etc/passwd /etc/passwd.moved \
             && mkdir /moved && mv /bin/true /moved/true && mv /bin/cat /moved/cat && rm /bin/ls \
             && echo appended >> /etc/group\n"
        ),
    )
    .unwrap();
    let tag = format!("localhost/{}:latest", unique("built"));
    p.ok(&[
        "build",
        "-q",
        "--isolation",
        "oci",
        "-t",
        &tag,
        ctx.to_str().unwrap(),
    ]);
    let out = p.ok(&[
        "run",
        "--rm",
        &tag,
        "/bin/sh",
        "-c",
        &format!(
            "{ROOT_MOUNT} | grep -q fuse.strata-overlayfs && echo root-is-strata; \
             /moved/cat /data/renamed /data/sub.moved/c; \
             for f in /data/a /data/b /data/sub /etc/os-release /etc/passwd /bin/true /bin/cat /bin/ls; do \
               test -e $f && echo still-there:$f; done; \
             test -s /etc/passwd.moved && echo passwd-moved; tail -n1 /etc/group; /moved/true && echo true-runs"
        ),
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "root-is-strata",
            "one",
            "three",
            "passwd-moved",
            "appended",
            "true-runs"
        ],
        "{out}"
    );
}

#[test]
fn podman_runtime_strata_runs_the_test_image() {
    let strata = env!("CARGO_BIN_EXE_strata");
    let p = Podman::new(None, strata);
    p.load_busybox();
    let name = unique("rt");
    let out = p.output(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-e",
        "STK_VAR=from-podman",
        "-w",
        "/tmp",
        "-u",
        "65534:65534",
        // strata's OCI CLI refuses config.json's linux.seccomp ("not supported by strata"), and
        // podman always sends its default profile unless told otherwise.
        "--security-opt",
        "seccomp=unconfined",
        IMAGE,
        "/bin/sh",
        "-c",
        "echo $STK_VAR; pwd; id -u; id -g; echo $$; exit 7",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "podman --runtime {strata} run: exit status not passed through; stdout: {stdout} stderr: {stderr}"
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["from-podman", "/tmp", "65534", "65534", "1"],
        "stderr: {stderr}"
    );
    // The container is gone from strata's state after --rm.
    let ps = p.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!ps.contains(&name), "{ps}");
}
