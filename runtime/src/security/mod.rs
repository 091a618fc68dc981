//! Capabilities, user switch, no_new_privs, rlimits and the default seccomp filter.
//!
//! [`Plan`] is built in the parent (the seccomp BPF is compiled once per strata process and cached); the
//! child applies it as the last step before exec with [`Plan::apply`].

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

pub use caps::CapsHashSet;
use caps::{CapSet, Capability};
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{PosixRlimitType, Spec};
use seccompiler::BpfProgram;

mod bpf;
pub mod chain;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
    #[error("capabilities: {0}")]
    Caps(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("unsupported rlimit {0}")]
    Rlimit(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
}

fn errno(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> SecurityError {
    move |errno| SecurityError::Sys {
        what: what.to_string(),
        errno,
    }
}

/// What the child applies to itself right before exec.
#[derive(Debug, Clone)]
pub struct Plan {
    pub keep: CapsHashSet,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// A `--user` given by name, resolved against the container's /etc/passwd and /etc/group.
    pub user_name: Option<String>,
    pub rlimits: Vec<(Resource, u64, u64)>,
    pub no_new_privs: bool,
    pub seccomp: Arc<Vec<BpfProgram>>,
}

fn rlimit_resource(t: PosixRlimitType) -> Result<Resource, SecurityError> {
    use PosixRlimitType as T;
    Ok(match t {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        other => return Err(SecurityError::Rlimit(format!("{other:?}"))),
    })
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan, SecurityError> {
        let process = spec.process().as_ref();
        let keep: CapsHashSet = process
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| Capability::from_str(&format!("CAP_{c}")).ok())
            .collect();
        let user = process.map(|p| p.user().clone()).unwrap_or_default();
        let mut rlimits = Vec::new();
        for r in process
            .and_then(|p| p.rlimits().as_ref())
            .into_iter()
            .flatten()
        {
            rlimits.push((rlimit_resource(r.typ())?, r.soft(), r.hard()));
        }
        let user_name = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::spec::ANNOTATION_USER))
            .cloned();
        let unconfined = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::spec::ANNOTATION_SECCOMP))
            .is_some_and(|v| v == "unconfined");
        let oci_profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        Ok(Plan {
            seccomp: if let Some(profile) = oci_profile {
                Arc::new(
                    crate::oci::seccomp::compile_profile(profile)
                        .map_err(|e| SecurityError::Seccomp(e.to_string()))?,
                )
            } else if unconfined {
                Arc::new(Vec::new())
            } else {
                seccomp_programs(&keep)?
            },
            keep,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            user_name,
            rlimits,
            // The runtime-spec default is false (Docker sets it only for `--security-opt no-new-privileges`).
            no_new_privs: process.and_then(|p| p.no_new_privileges()).unwrap_or(false),
        })
    }

    /// Applies limits, user, capabilities, no_new_privs and seccomp to the calling process, in the order
    /// that keeps each step permitted: rlimits and the bounding set need privilege, the user switch needs
    /// CAP_SETUID/SETGID, seccomp comes last so it never blocks strata's own setup.
    /// Returns the uid the process now runs as.
    pub fn apply(&self) -> Result<u32, SecurityError> {
        for &(res, soft, hard) in &self.rlimits {
            setrlimit(res, soft, hard).map_err(errno("setting rlimits"))?;
        }
        let (uid, gid, mut groups) = match &self.user_name {
            Some(name) => resolve_user(name)?,
            None => (self.uid, self.gid, Vec::new()),
        };
        groups.extend(&self.additional_gids);
        if groups.is_empty() {
            groups.push(gid);
        }

        // Without no_new_privs installing a filter needs CAP_SYS_ADMIN, so it goes in now, while strata
        // still has it (as runc does); the rest of this function's syscalls must pass it.
        if !self.no_new_privs {
            for prog in self.seccomp.iter() {
                crate::sys::install_seccomp_keeping_privs(prog)
                    .map_err(|e| SecurityError::Seccomp(e.to_string()))?;
            }
        }
        for cap in caps::all() {
            if !self.keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| SecurityError::Caps(e.to_string()))?;
            }
        }
        let groups: Vec<Gid> = groups.into_iter().map(Gid::from_raw).collect();
        setgroups(&groups).map_err(errno("setgroups"))?;
        setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))
            .map_err(errno("setgid"))?;
        setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
            .map_err(errno("setuid"))?;

        let caps_err = |e: caps::errors::CapsError| SecurityError::Caps(e.to_string());
        caps::clear(None, CapSet::Inheritable).map_err(caps_err)?;
        caps::clear(None, CapSet::Ambient).map_err(caps_err)?;
        if uid == 0 {
            caps::set(None, CapSet::Effective, &self.keep).map_err(caps_err)?;
            caps::set(None, CapSet::Permitted, &self.keep).map_err(caps_err)?;
        } else {
            // Docker gives non-root users no effective capabilities (the kernel already cleared them on
            // setuid; this makes it explicit).
            caps::clear(None, CapSet::Effective).map_err(caps_err)?;
            caps::clear(None, CapSet::Permitted).map_err(caps_err)?;
        }

        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs().map_err(errno("setting no_new_privs"))?;
            for prog in self.seccomp.iter() {
                seccompiler::apply_filter(prog)
                    .map_err(|e| SecurityError::Seccomp(e.to_string()))?;
            }
        }
        Ok(uid)
    }
}

/// The home directory of `uid` in the container's /etc/passwd, "/" when it has none (runc's rule for a
/// process whose environment sets no HOME; called after pivot_root).
pub fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse::<u32>() == Ok(uid) && !f[5].is_empty())
        .map_or_else(|| "/".to_string(), |f| f[5].to_string())
}

/// Looks `USER[:GROUP]` up in the container's /etc/passwd and /etc/group (called after pivot_root).
fn resolve_user(spec: &str) -> Result<(u32, u32, Vec<u32>), SecurityError> {
    let (user, group) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, name) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            f[0].to_string(),
        ),
        (None, Ok(uid)) => (uid, uid, String::new()),
        (None, Err(_)) => return Err(SecurityError::UnknownUser(user.to_string())),
    };
    let groups_file = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let groups: Vec<Vec<&str>> = groups_file
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| SecurityError::UnknownGroup(g.to_string()))?,
        };
    }
    let mut supplementary = vec![gid];
    if !name.is_empty() {
        for f in &groups {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if !supplementary.contains(&n) {
                        supplementary.push(n);
                    }
                }
            }
        }
    }
    Ok((uid, gid, supplementary))
}

/// Syscalls the default profile refuses with EPERM, each with the capability that unlocks it (as Docker's
/// profile allows them when the container is granted that capability). Docker's profile is an allow-list;
/// this deny-list blocks the same dangerous families (kernel modules, kexec, reboot, clocks, keyrings, bpf,
/// perf, mount/namespaces, handle-based opens, swap, accounting, userfaultfd, cross-process memory).
fn denied_syscalls() -> Vec<(i64, Option<Capability>)> {
    use Capability as C;
    let mut v: Vec<(i64, Option<Capability>)> = vec![
        (libc::SYS_acct, Some(C::CAP_SYS_PACCT)),
        (libc::SYS_add_key, None),
        (libc::SYS_request_key, None),
        (libc::SYS_keyctl, None),
        (libc::SYS_bpf, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_clock_adjtime, Some(C::CAP_SYS_TIME)),
        (libc::SYS_clock_settime, Some(C::CAP_SYS_TIME)),
        (libc::SYS_settimeofday, Some(C::CAP_SYS_TIME)),
        (libc::SYS_delete_module, Some(C::CAP_SYS_MODULE)),
        (libc::SYS_init_module, Some(C::CAP_SYS_MODULE)),
        (libc::SYS_finit_module, Some(C::CAP_SYS_MODULE)),
        (libc::SYS_kexec_load, Some(C::CAP_SYS_BOOT)),
        (libc::SYS_kexec_file_load, Some(C::CAP_SYS_BOOT)),
        (libc::SYS_reboot, Some(C::CAP_SYS_BOOT)),
        (libc::SYS_kcmp, Some(C::CAP_SYS_PTRACE)),
        (libc::SYS_process_vm_readv, Some(C::CAP_SYS_PTRACE)),
        (libc::SYS_process_vm_writev, Some(C::CAP_SYS_PTRACE)),
        (libc::SYS_lookup_dcookie, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_mount, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_umount2, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_pivot_root, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_setns, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_unshare, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_fsopen, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_fsconfig, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_fsmount, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_fspick, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_move_mount, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_open_tree, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_mount_setattr, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_quotactl, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_name_to_handle_at, Some(C::CAP_DAC_READ_SEARCH)),
        (libc::SYS_open_by_handle_at, Some(C::CAP_DAC_READ_SEARCH)),
        (libc::SYS_perf_event_open, Some(C::CAP_PERFMON)),
        (libc::SYS_swapon, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_swapoff, Some(C::CAP_SYS_ADMIN)),
        (libc::SYS_syslog, Some(C::CAP_SYSLOG)),
        (libc::SYS_userfaultfd, None),
        (libc::SYS_move_pages, Some(C::CAP_SYS_NICE)),
        (libc::SYS_mbind, Some(C::CAP_SYS_NICE)),
        (libc::SYS_set_mempolicy, Some(C::CAP_SYS_NICE)),
        (libc::SYS_get_mempolicy, Some(C::CAP_SYS_NICE)),
        (libc::SYS_nfsservctl, None),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (libc::SYS_iopl, Some(C::CAP_SYS_RAWIO)),
        (libc::SYS_ioperm, Some(C::CAP_SYS_RAWIO)),
        (libc::SYS_uselib, None),
        (libc::SYS_ustat, None),
        (libc::SYS_sysfs, None),
        (libc::SYS__sysctl, None),
    ]);
    v
}

/// Namespace-creating clone flags, refused without CAP_SYS_ADMIN (as in Docker's profile).
const CLONE_NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The default filter for a capability set as one search-tree program, compiled on every call
/// ([`seccomp_programs`] caches the one for Docker's default set).
pub fn compile(keep: &CapsHashSet) -> Result<Vec<BpfProgram>, SecurityError> {
    let eperm = bpf::Verdict::Errno(libc::EPERM as u32);
    let mut listed = BTreeMap::new();
    for (nr, cap) in denied_syscalls() {
        if cap.is_none_or(|c| !keep.contains(&c)) {
            listed.insert(nr as u32, eperm);
        }
    }
    if !keep.contains(&Capability::CAP_SYS_ADMIN) {
        let mask = CLONE_NS_FLAGS.iter().fold(0, |m, f| m | *f as u32);
        listed.insert(
            libc::SYS_clone as u32,
            bpf::Verdict::ErrnoIfArg0Any {
                mask,
                errno: libc::EPERM as u32,
            },
        );
        // clone3 passes its flags in memory, out of a filter's reach: answer ENOSYS so libc falls back
        // to clone(2), whose flags the filter checks. Docker does the same.
        listed.insert(
            libc::SYS_clone3 as u32,
            bpf::Verdict::Errno(libc::ENOSYS as u32),
        );
    }
    Ok(vec![bpf::compile(&listed).map_err(SecurityError::Seccomp)?])
}

/// Docker's default capability set (a container's bounding set when no `--cap-add`/`--cap-drop` is given).
pub fn default_caps() -> CapsHashSet {
    crate::spec::DOCKER_DEFAULT_CAPS
        .iter()
        .filter_map(|c| Capability::from_str(&format!("CAP_{c}")).ok())
        .collect()
}

/// The compiled filter for a capability set; the one for Docker's default set is compiled once per
/// process and reused.
pub fn seccomp_programs(keep: &CapsHashSet) -> Result<Arc<Vec<BpfProgram>>, SecurityError> {
    static DEFAULT: OnceLock<Arc<Vec<BpfProgram>>> = OnceLock::new();
    if *keep == default_caps() {
        if let Some(p) = DEFAULT.get() {
            return Ok(p.clone());
        }
        let p = Arc::new(compile(keep)?);
        return Ok(DEFAULT.get_or_init(|| p).clone());
    }
    Ok(Arc::new(compile(keep)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_compiles_and_is_cached() {
        let spec = crate::spec::build(
            "/r".into(),
            &crate::spec::ProcessOptions {
                command: vec!["true".into()],
                ..Default::default()
            },
            &Default::default(),
        )
        .unwrap();
        let a = Plan::from_spec(&spec).unwrap();
        let b = Plan::from_spec(&spec).unwrap();
        assert!(Arc::ptr_eq(&a.seccomp, &b.seccomp));
        assert_eq!(a.seccomp.len(), 1);
        assert_eq!(a.keep.len(), 14);
        assert!(a.keep.contains(&Capability::CAP_NET_RAW));
    }

    #[test]
    fn sys_admin_unlocks_mount_family() {
        let mut keep = CapsHashSet::new();
        keep.insert(Capability::CAP_SYS_ADMIN);
        let with = compile(&keep).unwrap();
        let without = compile(&CapsHashSet::new()).unwrap();
        let mount = libc::SYS_mount as u32;
        let run = |p: &Vec<BpfProgram>| bpf::tests::run(&p[0], bpf::AUDIT_ARCH, mount, 0);
        assert_eq!(run(&with), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&without), libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
    }
}
