//! The namespace kinds a container can have, their clone flags, their /proc names and the order in which
//! they are joined.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("unknown namespace '{0}' (expected one of pid, mnt, uts, ipc, net, user, cgroup)")]
    Unknown(String),
    #[error("--join expects NS=PATH, got '{0}'")]
    BadJoin(String),
}

/// A namespace kind. The declaration order is the order `setns` joins them in: user first (it grants the
/// capabilities for the others), mount last (it changes root and cwd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    User,
    Pid,
    Uts,
    Ipc,
    Net,
    Cgroup,
    Mnt,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::User,
        Kind::Pid,
        Kind::Uts,
        Kind::Ipc,
        Kind::Net,
        Kind::Cgroup,
        Kind::Mnt,
    ];

    pub fn flag(self) -> CloneFlags {
        match self {
            Kind::User => CloneFlags::CLONE_NEWUSER,
            Kind::Pid => CloneFlags::CLONE_NEWPID,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            Kind::Mnt => CloneFlags::CLONE_NEWNS,
        }
    }

    /// The file name under /proc/PID/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Pid => "pid",
            Kind::Uts => "uts",
            Kind::Ipc => "ipc",
            Kind::Net => "net",
            Kind::Cgroup => "cgroup",
            Kind::Mnt => "mnt",
        }
    }

    pub fn oci(self) -> LinuxNamespaceType {
        match self {
            Kind::User => LinuxNamespaceType::User,
            Kind::Pid => LinuxNamespaceType::Pid,
            Kind::Uts => LinuxNamespaceType::Uts,
            Kind::Ipc => LinuxNamespaceType::Ipc,
            Kind::Net => LinuxNamespaceType::Network,
            Kind::Cgroup => LinuxNamespaceType::Cgroup,
            Kind::Mnt => LinuxNamespaceType::Mount,
        }
    }

    pub fn from_oci(t: LinuxNamespaceType) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.oci() == t)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

impl FromStr for Kind {
    type Err = NamespaceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "user" => Kind::User,
            "pid" => Kind::Pid,
            "uts" => Kind::Uts,
            "ipc" => Kind::Ipc,
            "net" | "network" => Kind::Net,
            "cgroup" => Kind::Cgroup,
            "mnt" | "mount" => Kind::Mnt,
            other => return Err(NamespaceError::Unknown(other.to_string())),
        })
    }
}

/// Parses `NS=PATH` of `--join`.
pub fn parse_join(s: &str) -> Result<(Kind, PathBuf), NamespaceError> {
    let (k, p) = s
        .split_once('=')
        .ok_or_else(|| NamespaceError::BadJoin(s.to_string()))?;
    if p.is_empty() {
        return Err(NamespaceError::BadJoin(s.to_string()));
    }
    Ok((k.parse()?, PathBuf::from(p)))
}

/// What the container does with each namespace, derived from the spec's namespace list: a kind absent from
/// the list is shared with the host, one with a path is joined, one without is created by clone3.
#[derive(Debug, Clone)]
pub struct NamespacePlan {
    pub new: CloneFlags,
    /// Joined by path, in [`Kind`] (setns) order.
    pub join: Vec<(Kind, PathBuf)>,
}

impl Default for NamespacePlan {
    fn default() -> Self {
        NamespacePlan {
            new: CloneFlags::empty(),
            join: Vec::new(),
        }
    }
}

impl NamespacePlan {
    pub fn from_spec(list: &[LinuxNamespace]) -> NamespacePlan {
        let mut plan = NamespacePlan::default();
        for ns in list {
            let Some(kind) = Kind::from_oci(ns.typ()) else {
                continue;
            };
            match ns.path() {
                Some(p) => plan.join.push((kind, p.clone())),
                None => plan.new |= kind.flag(),
            }
        }
        plan.join.sort_by_key(|(k, _)| *k);
        plan
    }

    pub fn creates(&self, kind: Kind) -> bool {
        self.new.contains(kind.flag())
    }

    /// True when the container has its own namespace of this kind (created or joined).
    pub fn isolates(&self, kind: Kind) -> bool {
        self.creates(kind) || self.join.iter().any(|(k, _)| *k == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    #[test]
    fn join_order_is_user_first_mount_last() {
        let list = vec![
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Mount)
                .path("/a")
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .path("/b")
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()
                .unwrap(),
        ];
        let plan = NamespacePlan::from_spec(&list);
        assert_eq!(plan.new, CloneFlags::CLONE_NEWNET);
        assert_eq!(
            plan.join.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![Kind::User, Kind::Mnt]
        );
        assert!(plan.isolates(Kind::Mnt) && !plan.isolates(Kind::Pid));
    }

    #[test]
    fn parses_names_and_joins() {
        assert_eq!("net".parse::<Kind>().unwrap(), Kind::Net);
        assert!("bogus".parse::<Kind>().is_err());
        assert_eq!(
            parse_join("uts=/proc/1/ns/uts").unwrap(),
            (Kind::Uts, PathBuf::from("/proc/1/ns/uts"))
        );
        assert!(parse_join("uts").is_err());
    }
}
