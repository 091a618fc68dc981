//! Helpers of the OCI command-line tests: a bundle (config.json in runc's default shape, root.path the
//! test's busybox rootfs) and waiting on `strata state`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::common::Env;

/// The config.json `runc spec` writes (namespaces, mounts, masked paths, default device rule), with
/// `args` as the process and no terminal.
pub fn default_config(root: &Path, args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": root, "readonly": false},
        "hostname": "oci-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// A bundle directory under the test's tempdir holding `config`.
pub fn write_bundle(env: &Env, name: &str, config: &Value) -> PathBuf {
    let dir = env.tmp.path().join(format!("bundle-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    dir
}

/// `strata ARGS…` with stdio not inherited: a created container keeps the stdio of `create`, so
/// capturing create's output through pipes would wait for the container to end.
pub fn oci(env: &Env, args: &[&str]) -> Output {
    env.strata()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `strata create ID --bundle B EXTRA…` with the container's stdio going to files in the tempdir.
pub fn create(
    env: &Env,
    id: &str,
    bundle: &Path,
    extra: &[&str],
) -> (std::process::ExitStatus, String) {
    let err_path = env.tmp.path().join(format!("{id}.create-stderr"));
    let out = std::fs::File::create(env.tmp.path().join(format!("{id}.stdout"))).unwrap();
    let err = std::fs::File::create(&err_path).unwrap();
    let status = env
        .strata()
        .arg("create")
        .arg(id)
        .arg("--bundle")
        .arg(bundle)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .unwrap();
    (status, std::fs::read_to_string(err_path).unwrap())
}

/// `strata state ID` parsed, asserting success.
pub fn state(env: &Env, id: &str) -> Value {
    let o = oci(env, &["state", id]);
    assert!(
        o.status.success(),
        "state {id}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Polls `strata state` until the status is `want` (bounded: fails after 20 s).
pub fn wait_status(env: &Env, id: &str, want: &str) -> Value {
    for _ in 0..2000 {
        let s = state(env, id);
        if s["status"] == want {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!(
        "container {id} never reached status {want}: {}",
        state(env, id)
    );
}

/// Polls until `path` exists (bounded: fails after 20 s).
pub fn wait_path(path: &Path) {
    for _ in 0..2000 {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

/// One-line error on stderr that mentions `needle`, and a failing status.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, got {:?}", o.status);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err:?}"
    );
    assert!(
        err.contains(needle),
        "error should mention {needle:?}: {err:?}"
    );
}
