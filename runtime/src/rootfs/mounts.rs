//! One OCI mount entry, pre-parsed into mount(2) arguments.

use std::path::PathBuf;

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::{RootfsError, sys};

/// A mount under the rootfs, with its target relative to the rootfs (the child mounts it after chdir into
/// the rootfs, before pivot_root).
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: Option<String>,
    pub source: Option<PathBuf>,
    pub flags: MsFlags,
    pub data: Option<String>,
    /// A bind mount whose read-only (or other per-mount) flags need a second, remounting call.
    pub bind_remount: bool,
}

/// The mount options [`parse_options`] turns into flags (others are passed to the filesystem as data).
pub fn known_mount_options() -> Vec<&'static str> {
    vec![
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "sync",
        "noatime",
        "nodiratime",
        "relatime",
        "strictatime",
        "bind",
        "rbind",
        "private",
        "rprivate",
    ]
}

/// A mount(2) data string ("key=value,flag,…") as the parameters fsconfig(2) takes, in order: a value, or
/// none for a flag.
pub fn data_params(data: &str) -> Vec<(&str, Option<&str>)> {
    data.split(',')
        .filter(|o| !o.is_empty())
        .map(|o| o.split_once('=').map_or((o, None), |(k, v)| (k, Some(v))))
        .collect()
}

/// Splits OCI/fstab-style options into mount flags and the filesystem-specific data string.
pub fn parse_options(options: &[String]) -> (MsFlags, Option<String>) {
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" => (MsFlags::MS_PRIVATE, MsFlags::empty()),
            "rprivate" => (MsFlags::MS_PRIVATE | MsFlags::MS_REC, MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) - clear;
    }
    (flags, (!data.is_empty()).then(|| data.join(",")))
}

impl MountEntry {
    pub fn from_oci(m: &Mount) -> MountEntry {
        let (flags, data) = parse_options(m.options().as_deref().unwrap_or_default());
        let fstype = m.typ().clone().filter(|t| t != "bind" && t != "none");
        let is_bind = flags.contains(MsFlags::MS_BIND) || m.typ().as_deref() == Some("bind");
        let target = m
            .destination()
            .strip_prefix("/")
            .unwrap_or(m.destination())
            .to_path_buf();
        MountEntry {
            target,
            fstype: if is_bind { None } else { fstype },
            source: m.source().clone(),
            flags: if is_bind {
                flags | MsFlags::MS_BIND
            } else {
                flags
            },
            data: if is_bind { None } else { data },
            bind_remount: is_bind && !(flags - MsFlags::MS_BIND - MsFlags::MS_REC).is_empty(),
        }
    }

    /// The same destination, served by a recursive read-only bind of a host path instead.
    pub fn as_rbind_of(&self, host: &str) -> MountEntry {
        MountEntry {
            target: self.target.clone(),
            fstype: None,
            source: Some(PathBuf::from(host)),
            flags: self.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
            bind_remount: true,
        }
    }

    pub fn is_dev_tmpfs(&self) -> bool {
        self.target.as_os_str() == "dev" && self.fstype.as_deref() == Some("tmpfs")
    }

    /// Mounts relative to the current directory (the rootfs). Creates a missing target (a directory, or an
    /// empty file for a bind of a file) and refuses a symlinked target, which could point outside.
    pub fn mount_relative(&self) -> Result<(), RootfsError> {
        match std::fs::symlink_metadata(&self.target) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(RootfsError::SymlinkTarget(self.target.clone()));
            }
            Ok(_) => {}
            Err(_) => {
                let source_is_file = self.fstype.is_none()
                    && self
                        .source
                        .as_ref()
                        .is_some_and(|s| std::fs::metadata(s).is_ok_and(|m| !m.is_dir()));
                let r = if source_is_file {
                    std::fs::File::create(&self.target).map(drop)
                } else {
                    std::fs::create_dir_all(&self.target)
                };
                r.map_err(|e| RootfsError::Sys {
                    what: format!("creating mount point /{}", self.target.display()),
                    errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                })?;
            }
        }
        let what = || {
            format!(
                "mounting {} on /{}",
                self.fstype.as_deref().unwrap_or("bind"),
                self.target.display()
            )
        };
        let first = if self.bind_remount {
            self.flags & (MsFlags::MS_BIND | MsFlags::MS_REC)
        } else {
            self.flags
        };
        mount(
            self.source.as_deref(),
            &self.target,
            self.fstype.as_deref(),
            first,
            self.data.as_deref(),
        )
        .map_err(sys(what))?;
        if self.bind_remount {
            mount(
                None::<&str>,
                &self.target,
                None::<&str>,
                (self.flags - MsFlags::MS_REC) | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(sys(what))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["nosuid", "ro", "mode=755", "size=65536k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(data.as_deref(), Some("mode=755,size=65536k"));
    }

    #[test]
    fn readonly_bind_needs_a_remount() {
        let m = oci_spec::runtime::MountBuilder::default()
            .destination("/data")
            .typ("bind")
            .source("/srv")
            .options(vec!["rbind".to_string(), "ro".to_string()])
            .build()
            .unwrap();
        let e = MountEntry::from_oci(&m);
        assert!(e.bind_remount && e.fstype.is_none());
        assert_eq!(e.target, PathBuf::from("data"));
    }
}
