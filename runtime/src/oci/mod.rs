//! The OCI runtime side of strata: loading and checking a bundle's config.json ([`bundle`]), running the
//! spec's hooks ([`hooks`]) and the state JSON of runtime-spec runtime.md ([`state_json`]). The lifecycle
//! itself (create, start, kill, delete …) is in `container::oci`, on the same creation path as `strata run`.

pub mod bundle;
pub mod hooks;
mod jsonpath;

use std::path::Path;

use serde_json::json;

/// The runtime-spec version strata implements (what `features` and `state` report).
pub const OCI_VERSION: &str = "1.2.0";

/// The state of runtime.md: `status` is creating | created | running | stopped.
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &Path,
    annotations: &std::collections::HashMap<String, String>,
) -> serde_json::Value {
    let mut v = json!({
        "ociVersion": OCI_VERSION,
        "id": id,
        "status": status,
        "bundle": bundle,
        "annotations": annotations,
    });
    if pid > 0 {
        v["pid"] = json!(pid);
    }
    v
}

/// `strata features`: what this build supports, in the shape of runc's `features` output.
pub fn features() -> serde_json::Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::rootfs::known_mount_options(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": {
            "org.strata.version": env!("CARGO_PKG_VERSION"),
        },
    })
}
