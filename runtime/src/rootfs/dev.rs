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
