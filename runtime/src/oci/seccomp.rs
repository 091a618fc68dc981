//! linux.seccomp → BPF with seccompiler. seccompiler's filter has one action on match and one on
//! mismatch, so a profile becomes a stack of filters, relying on the kernel running every filter and
//! keeping the most restrictive answer (the latest-installed one on ties): first "allow these, else the
//! default action", then one filter per other action ("these get ACTION, else allow"). Syscall names
//! this architecture does not know are skipped, as runc and libseccomp do.

use std::collections::{BTreeMap, HashMap};

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp: {0}")]
    Unsupported(String),
    #[error("linux.seccomp: compiling the filter: {0}")]
    Compile(String),
}

fn native_arch() -> Result<(TargetArch, Arch), SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError::Unsupported(e.to_string()))?;
    let oci = match std::env::consts::ARCH {
        "x86_64" => Arch::ScmpArchX86_64,
        "aarch64" => Arch::ScmpArchAarch64,
        _ => Arch::ScmpArchRiscv64,
    };
    Ok((arch, oci))
}

/// seccompiler's JSON name of an action.
fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Value, SeccompError> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActAllow => json!("allow"),
        A::ScmpActErrno => json!({"errno": errno.unwrap_or(libc::EPERM as u32)}),
        A::ScmpActKill | A::ScmpActKillThread => json!("kill_thread"),
        A::ScmpActKillProcess => json!("kill_process"),
        A::ScmpActTrap => json!("trap"),
        A::ScmpActLog => json!("log"),
        A::ScmpActTrace => json!({"trace": errno.unwrap_or(0)}),
        other => return Err(SeccompError::Unsupported(format!("action {other:?}"))),
    })
}

fn condition(a: &oci_spec::runtime::LinuxSeccompArg) -> Value {
    use LinuxSeccompOperator as O;
    let (op, val) = match a.op() {
        O::ScmpCmpNe => (json!("ne"), a.value()),
        O::ScmpCmpLt => (json!("lt"), a.value()),
        O::ScmpCmpLe => (json!("le"), a.value()),
        O::ScmpCmpEq => (json!("eq"), a.value()),
        O::ScmpCmpGe => (json!("ge"), a.value()),
        O::ScmpCmpGt => (json!("gt"), a.value()),
        O::ScmpCmpMaskedEq => (json!({"masked_eq": a.value()}), a.value_two().unwrap_or(0)),
    };
    json!({"index": a.index(), "type": "qword", "op": op, "val": val})
}

/// Compiles one seccompiler JSON filter.
fn compile(filter: Value, arch: TargetArch) -> Result<BpfProgram, String> {
    let text = json!({ "f": filter }).to_string();
    let mut map =
        seccompiler::compile_from_json(text.as_bytes(), arch).map_err(|e| e.to_string())?;
    map.remove("f").ok_or_else(|| "no filter".to_string())
}

/// The programs for `profile`, in installation order.
pub fn compile_profile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>, SeccompError> {
    let (arch, oci_arch) = native_arch()?;
    if let Some(archs) = profile.architectures() {
        if !archs.is_empty() && !archs.contains(&oci_arch) && !archs.contains(&Arch::ScmpArchNative)
        {
            return Err(SeccompError::Unsupported(format!(
                "architectures {archs:?} do not include this machine's {oci_arch:?}"
            )));
        }
    }
    if profile.listener_path().is_some() {
        return Err(SeccompError::Unsupported(
            "listenerPath (SCMP_ACT_NOTIFY)".into(),
        ));
    }
    if profile.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(SeccompError::Unsupported("flags".into()));
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let allow = json!("allow");
    // action (as JSON text) → syscall name → rules (None = unconditional).
    let mut groups: BTreeMap<String, HashMap<String, Option<Vec<Value>>>> = BTreeMap::new();
    let mut known: HashMap<String, bool> = HashMap::new();
    for s in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(s.action(), s.errno_ret())?;
        if act == default {
            continue;
        }
        let conds: Vec<Value> = s.args().iter().flatten().map(condition).collect();
        // LOG must pass the first (allow-list) filter too, then be logged by its own.
        let targets: Vec<Value> = if act == json!("log") && default != allow {
            vec![allow.clone(), act]
        } else {
            vec![act]
        };
        for name in s.names() {
            let is_known = *known.entry(name.clone()).or_insert_with(|| {
                compile(
                    json!({"mismatch_action": "allow", "match_action": "log",
                           "filter": [{"syscall": name}]}),
                    arch,
                )
                .is_ok()
            });
            if !is_known {
                continue;
            }
            for t in &targets {
                let rules = groups.entry(t.to_string()).or_default();
                match rules
                    .entry(name.clone())
                    .or_insert_with(|| Some(Vec::new()))
                {
                    Some(list) if !conds.is_empty() => {
                        list.push(json!({"syscall": name, "args": conds}))
                    }
                    slot => *slot = None,
                }
            }
        }
    }
    let to_rules = |m: &HashMap<String, Option<Vec<Value>>>| -> Vec<Value> {
        let mut names: Vec<&String> = m.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| match &m[n] {
                None => vec![json!({"syscall": n})],
                Some(list) => list.clone(),
            })
            .collect()
    };
    let allow_key = allow.to_string();
    let mut programs = Vec::new();
    if default != allow {
        let rules = groups
            .get(&allow.to_string())
            .map(to_rules)
            .unwrap_or_default();
        let f = json!({"mismatch_action": default, "match_action": "allow", "filter": rules});
        programs.push(compile(f, arch).map_err(SeccompError::Compile)?);
    }
    for (act, m) in &groups {
        if *act == allow_key {
            continue;
        }
        let act: Value =
            serde_json::from_str(act).map_err(|e| SeccompError::Compile(e.to_string()))?;
        let f = json!({"mismatch_action": "allow", "match_action": act, "filter": to_rules(m)});
        programs.push(compile(f, arch).map_err(SeccompError::Compile)?);
    }
    Ok(programs)
}
