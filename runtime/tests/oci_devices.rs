//! config.json's `linux.devices` (extra nodes with type, numbers, mode and owner) and
//! `linux.rootfsPropagation` (whether host mounts reach the container), through `strata run --bundle`.

mod common;
mod oci_support;

use common::{Env, unique};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use oci_support::*;
use serde_json::json;

fn run_bundle(env: &Env, config: &serde_json::Value) -> std::process::Output {
    let id = unique("ocidev");
    let bundle = write_bundle(env, &id, config);
    env.strata()
        .args(["run", &id, "--bundle", bundle.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn linux_devices_are_created_with_type_numbers_mode_and_owner() {
    let env = Env::new();
    let script = "stat -c '%F %t:%T %a %u:%g' /dev/strata-null /dev/sub/strata-fifo; \
                  echo x > /dev/strata-null && echo wrote";
    let mut config = default_config(&env.rootfs, &["sh", "-c", script]);
    // The owner may write the 0640 node (root of this config has no CAP_DAC_OVERRIDE).
    config["process"]["user"] = json!({"uid": 1000, "gid": 1001});
    config["linux"]["devices"] = json!([
        {"path": "/dev/strata-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
         "uid": 1000, "gid": 1001},
        {"path": "/dev/sub/strata-fifo", "type": "p", "major": 0, "minor": 0}
    ]);
    config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ]);
    let o = run_bundle(&env, &config);
    assert!(o.status.success(), "run: {}", common::stderr(&o));
    assert_eq!(
        common::stdout(&o),
        "character special file 1:3 640 1000:1001\nfifo 0:0 666 0:0\nwrote\n"
    );
    env.assert_nothing_left();
}

#[test]
fn linux_devices_refuse_a_bad_entry_by_name() {
    let env = Env::new();
    let mut config = default_config(&env.rootfs, &["true"]);
    config["linux"]["devices"] = json!([
        {"path": "dev/relative", "type": "c", "major": 1, "minor": 3}
    ]);
    let o = run_bundle(&env, &config);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(
        err.contains("linux.devices dev/relative") && err.trim().lines().count() == 1,
        "{err}"
    );
    env.assert_nothing_left();
}

/// The rootfs as a shared mount of its own (the host's mounts here are private), unmounted on drop.
struct SharedRootfs<'a>(&'a std::path::Path);

impl<'a> SharedRootfs<'a> {
    fn new(root: &'a std::path::Path) -> SharedRootfs<'a> {
        mount(
            Some(root),
            root,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let guard = SharedRootfs(root);
        mount(
            None::<&str>,
            root,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        guard
    }
}

impl Drop for SharedRootfs<'_> {
    fn drop(&mut self) {
        let _ = umount2(&self.0.join("mnt"), MntFlags::MNT_DETACH);
        let _ = umount2(self.0, MntFlags::MNT_DETACH);
    }
}

/// Starts a container that waits (≤ 3 s) for /mnt/marker, mounts a tmpfs with that file on the
/// rootfs's /mnt from the host, and returns whether the container saw it, and its view of `/`.
fn sees_host_mount(env: &Env, propagation: Option<&str>) -> (bool, String) {
    std::fs::create_dir_all(env.rootfs.join("mnt")).unwrap();
    let _shared = SharedRootfs::new(&env.rootfs);
    let script = "grep -E '^[0-9]+ [0-9]+ [0-9:]+ [^ ]+ / ' /proc/self/mountinfo > /tmp/root-line; touch /tmp/ready; \
                  for i in $(seq 1 30); do [ -e /mnt/marker ] && exit 0; sleep 0.1; done; exit 1";
    let mut config = default_config(&env.rootfs, &["sh", "-c", script]);
    if let Some(p) = propagation {
        config["linux"]["rootfsPropagation"] = json!(p);
    }
    let id = unique("ocidev");
    let bundle = write_bundle(env, &id, &config);
    let child = env
        .strata()
        .args(["run", &id, "--bundle", bundle.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_file(&env.rootfs.join("tmp/ready"));
    let mnt = env.rootfs.join("mnt");
    mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(mnt.join("marker"), "").unwrap();
    let o = common::wait_child(child);
    let root_line = std::fs::read_to_string(env.rootfs.join("tmp/root-line")).unwrap();
    for f in ["ready", "root-line"] {
        let _ = std::fs::remove_file(env.rootfs.join("tmp").join(f));
    }
    (o.status.success(), root_line)
}

#[test]
fn rootfs_propagation_decides_whether_host_mounts_arrive() {
    let env = Env::new();
    // strata's default (and "rprivate"): the container's mounts are its own.
    let (seen, line) = sees_host_mount(&env, None);
    assert!(line.contains(" / "), "no mountinfo line for /: {line:?}");
    assert!(!seen, "a private root received a host mount: {line}");
    assert!(
        !line.contains("master:") && !line.contains("shared:"),
        "{line}"
    );
    // rslave: a slave of the host's mount — host mounts arrive, the container's do not go back.
    let (seen, line) = sees_host_mount(&env, Some("rslave"));
    assert!(seen, "an rslave root missed a host mount: {line}");
    assert!(
        line.contains("master:") && !line.contains("shared:"),
        "{line}"
    );
    // rshared: also a peer group of its own for copies of the container's namespace.
    let (seen, line) = sees_host_mount(&env, Some("rshared"));
    assert!(seen, "an rshared root missed a host mount: {line}");
    assert!(line.contains("shared:"), "{line}");
    let (_, line) = sees_host_mount(&env, Some("private"));
    assert!(
        !line.contains("master:") && !line.contains("shared:"),
        "{line}"
    );
    env.assert_nothing_left();
}

#[test]
fn rootfs_propagation_refuses_an_unknown_value() {
    let env = Env::new();
    let mut config = default_config(&env.rootfs, &["true"]);
    config["linux"]["rootfsPropagation"] = json!("sideways");
    let o = run_bundle(&env, &config);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(
        err.contains("linux.rootfsPropagation \"sideways\""),
        "{err}"
    );
    env.assert_nothing_left();
}
