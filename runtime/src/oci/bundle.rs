//! A bundle's config.json, read through oci-spec and checked before anything is created: a syntax or
//! type error names the field, a bind mount's missing source is reported, and a field strata does not
//! implement that would change the container's isolation is refused by name rather than ignored.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config.json: syntax error: {0}")]
    Syntax(String),
    #[error("config.json: {field}: {message}")]
    Field { field: String, message: String },
    #[error("config.json: {field}: not supported by strata")]
    Unsupported { field: String },
    #[error("config.json: unknown field {field}")]
    Unknown { field: String },
}

fn field(field: impl Into<String>, message: impl Into<String>) -> BundleError {
    BundleError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// A checked bundle: its directory, the spec and the absolute rootfs directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

/// Reads and checks `dir/config.json`.
pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
    let dir = std::fs::canonicalize(dir).map_err(|err| BundleError::Read {
        path: dir.to_path_buf(),
        err,
    })?;
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|err| BundleError::Read {
        path: path.clone(),
        err,
    })?;
    let raw: Value = serde_json::from_str(&text).map_err(|e| BundleError::Syntax(e.to_string()))?;
    let spec: Spec = serde_json::from_str(&text).map_err(|e| {
        let message = e.to_string();
        let missing = message.starts_with("missing field");
        let at = super::jsonpath::path_at(&text, e.line(), e.column(), missing);
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_string();
        field(
            if at.is_empty() {
                "(top level)".into()
            } else {
                at
            },
            message,
        )
    })?;
    let known = serde_json::to_value(&spec).map_err(|e| field("(top level)", e.to_string()))?;
    if let Some(f) = unknown_field(&raw, &known, "") {
        return Err(BundleError::Unknown { field: f });
    }
    check_supported(&raw)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| field("root", "missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(field(
            "root.path",
            format!("{}: no such directory", rootfs.display()),
        ));
    }
    if spec.process().is_none() {
        return Err(field("process", "missing (strata runs a process)"));
    }
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if let (true, Some(src)) = (is_bind, m.source()) {
            let src = if src.is_absolute() {
                src.clone()
            } else {
                dir.join(src)
            };
            if std::fs::symlink_metadata(&src).is_err() {
                return Err(field(
                    format!("mounts[{i}].source"),
                    format!("{}: no such file or directory", src.display()),
                ));
            }
        }
        if !m.destination().is_absolute() {
            return Err(field(
                format!("mounts[{i}].destination"),
                "must be an absolute path",
            ));
        }
    }
    Ok(Bundle { dir, spec, rootfs })
}

/// True for values that mean "not set" (oci-spec may drop them when it serialises).
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_unset),
    }
}

/// The first field of `raw` that oci-spec did not read (absent from its re-serialisation), skipping
/// annotations (free-form by design) and unset values.
fn unknown_field(raw: &Value, known: &Value, at: &str) -> Option<String> {
    match (raw, known) {
        (Value::Object(r), Value::Object(k)) => {
            for (key, v) in r {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                if path == "annotations" || is_unset(v) {
                    continue;
                }
                match k.get(key) {
                    None => return Some(path),
                    Some(kv) => {
                        if let Some(f) = unknown_field(v, kv, &path) {
                            return Some(f);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(r), Value::Array(k)) => r
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (rv, kv))| unknown_field(rv, kv, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// Fields oci-spec reads but strata does not implement, each of which changes what the container may do
/// (so running without it would be a silent weakening or a silent difference).
const UNSUPPORTED: &[&str] = &[
    "linux.intelRdt",
    "linux.personality",
    "linux.timeOffsets",
    "linux.mountLabel",
    "linux.resources.hugepageLimits",
    "linux.resources.network",
    "linux.resources.rdma",
    "linux.resources.unified",
    "linux.resources.memory.reservation",
    "linux.resources.memory.kernel",
    "linux.resources.memory.kernelTCP",
    "linux.resources.memory.swappiness",
    "linux.resources.memory.disableOOMKiller",
    "linux.resources.cpu.realtimeRuntime",
    "linux.resources.cpu.realtimePeriod",
    "linux.resources.cpu.mems",
    "linux.resources.cpu.idle",
    "linux.resources.blockIO.leafWeight",
    "linux.resources.blockIO.weightDevice",
    "linux.resources.blockIO.throttleReadIOPSDevice",
    "linux.resources.blockIO.throttleWriteIOPSDevice",
    "process.apparmorProfile",
    "process.selinuxLabel",
    "process.ioPriority",
    "process.scheduler",
    "process.execCPUAffinity",
];

fn check_supported(raw: &Value) -> Result<(), BundleError> {
    for f in UNSUPPORTED {
        let v = f.split('.').try_fold(raw, |v, k| v.get(k));
        if v.is_some_and(|v| !is_unset(v)) {
            return Err(BundleError::Unsupported {
                field: f.to_string(),
            });
        }
    }
    let namespaces = raw
        .pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        if ns.get("type").and_then(Value::as_str) == Some("time") {
            return Err(BundleError::Unsupported {
                field: format!("linux.namespaces[{i}] (time)"),
            });
        }
    }
    let has_ns = |t: &str| {
        namespaces
            .iter()
            .any(|ns| ns.get("type").and_then(Value::as_str) == Some(t))
    };
    let sysctls = raw
        .pointer("/linux/sysctl")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for key in sysctls.keys() {
        // Only keys that belong to a namespace of the container (as runc allows), never host-wide ones.
        let ipc = key.starts_with("kernel.shm")
            || key.starts_with("kernel.msg")
            || key == "kernel.sem"
            || key.starts_with("fs.mqueue.");
        let ok = (key.starts_with("net.") && has_ns("network"))
            || (ipc && has_ns("ipc"))
            || ((key == "kernel.hostname" || key == "kernel.domainname") && has_ns("uts"));
        if !ok {
            return Err(field(
                format!("linux.sysctl.{key}"),
                "not a sysctl of one of the container's namespaces",
            ));
        }
    }
    if let Some(p) = raw.pointer("/linux/cgroupsPath").and_then(Value::as_str) {
        if p.contains(':') {
            return Err(field(
                "linux.cgroupsPath",
                format!(
                    "{p:?} is a systemd slice:prefix:name path; strata manages cgroupfs paths only"
                ),
            ));
        }
    }
    Ok(())
}

/// The cgroup (parent, name) for `linux.cgroupsPath` ("/a/b/c" → ("a/b", "c")), or `default_parent/id`.
pub fn cgroup_location(
    spec: &Spec,
    id: &str,
    default_parent: &str,
) -> Result<(String, String), BundleError> {
    let Some(path) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) else {
        return Ok((default_parent.to_string(), id.to_string()));
    };
    let text = path.display().to_string();
    let rel = text.trim_matches('/');
    match rel.rsplit_once('/') {
        Some((parent, name)) if !parent.is_empty() && !name.is_empty() => {
            Ok((parent.to_string(), name.to_string()))
        }
        _ => Err(field(
            "linux.cgroupsPath",
            format!("{text:?}: needs a parent and a name (e.g. /{default_parent}/{id})"),
        )),
    }
}
