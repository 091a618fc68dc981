//! The standard device nodes and links of a container's tmpfs /dev.

use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::{RootfsError, sys};

/// (name, major, minor) of the character devices every container gets, as in the OCI spec's defaults.
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "dev/fd"),
    ("/proc/self/fd/0", "dev/stdin"),
    ("/proc/self/fd/1", "dev/stdout"),
    ("/proc/self/fd/2", "dev/stderr"),
    ("pts/ptmx", "dev/ptmx"),
];

/// Fills the freshly mounted tmpfs at `dev` (relative to the rootfs): device nodes by mknod, or — inside a
/// user namespace, where mknod is refused — bind mounts of the host's nodes; then the standard links.
/// The process umask is 0 here (set by the child), so modes are exact.
pub fn populate(mknod_devices: bool) -> Result<(), RootfsError> {
    for (name, major, minor) in DEVICES {
        let path = format!("dev/{name}");
        if mknod_devices {
            mknod(
                path.as_str(),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .map_err(sys(|| format!("creating /{path}")))?;
        } else {
            std::fs::File::create(&path).map_err(|e| RootfsError::Sys {
                what: format!("creating /{path}"),
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
            let host = format!("/dev/{name}");
            mount(
                Some(host.as_str()),
                path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(|| format!("binding {host}")))?;
        }
    }
    for (target, link) in LINKS {
        std::os::unix::fs::symlink(target, link).map_err(|e| RootfsError::Sys {
            what: format!("linking /{link}"),
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    }
    Ok(())
}

/// A `linux.devices` entry: a node the container gets in its /dev (or elsewhere) beyond the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDevice {
    /// Relative to the rootfs.
    pub path: std::path::PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl ExtraDevice {
    pub fn from_oci(d: &oci_spec::runtime::LinuxDevice) -> Result<ExtraDevice, RootfsError> {
        use oci_spec::runtime::LinuxDeviceType as T;
        let kind = match d.typ() {
            T::C | T::U => SFlag::S_IFCHR,
            T::B => SFlag::S_IFBLK,
            T::P => SFlag::S_IFIFO,
            T::A => {
                return Err(RootfsError::Spec(format!(
                    "linux.devices {}: type \"a\" is only valid in device cgroup rules",
                    d.path().display()
                )));
            }
        };
        let path = d.path();
        if !path.is_absolute()
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(RootfsError::Spec(format!(
                "linux.devices {}: path must be absolute, without ..",
                path.display()
            )));
        }
        Ok(ExtraDevice {
            path: path.strip_prefix("/").unwrap_or(path).to_path_buf(),
            kind,
            major: u64::try_from(d.major()).unwrap_or(0),
            minor: u64::try_from(d.minor()).unwrap_or(0),
            // The runtime-spec leaves the default to the runtime; runc's is 0666 as for the defaults.
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid(),
            gid: d.gid(),
        })
    }

    /// Creates the node relative to the current directory (the rootfs): mknod, or inside a user
    /// namespace a bind mount of the host's node at the same path. A file already there (one of the
    /// defaults) is replaced.
    pub fn create(&self, mknod_devices: bool) -> Result<(), RootfsError> {
        let shown = || format!("/{}", self.path.display());
        let io = |what: String| {
            move |e: std::io::Error| RootfsError::Sys {
                what,
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        };
        // Still in the host's root: a symlink on the way would put the node outside the rootfs.
        let mut at = std::path::PathBuf::new();
        for c in self.path.parent().into_iter().flat_map(|p| p.components()) {
            at.push(c);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(RootfsError::SymlinkTarget(
                    std::path::Path::new("/").join(&at),
                ));
            }
        }
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        if std::fs::symlink_metadata(&self.path).is_ok() {
            std::fs::remove_file(&self.path).map_err(io(format!("replacing {}", shown())))?;
        }
        if mknod_devices {
            mknod(
                &self.path,
                self.kind,
                Mode::from_bits_truncate(self.mode),
                makedev(self.major, self.minor),
            )
            .map_err(sys(|| format!("creating device {}", shown())))?;
            if self.uid.is_some() || self.gid.is_some() {
                nix::unistd::chown(
                    &self.path,
                    self.uid.map(nix::unistd::Uid::from_raw),
                    self.gid.map(nix::unistd::Gid::from_raw),
                )
                .map_err(sys(|| format!("chown of device {}", shown())))?;
            }
        } else {
            std::fs::File::create(&self.path).map_err(io(format!("creating {}", shown())))?;
            let host = std::path::Path::new("/").join(&self.path);
            mount(
                Some(&host),
                &self.path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(|| format!("binding device {}", host.display())))?;
        }
        Ok(())
    }
}
