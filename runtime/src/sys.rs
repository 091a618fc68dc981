//! Every `unsafe` call of this crate, each behind a safe function.

// ======================================================================================
// Network (resources helper): interface flags by ioctl, and running a command in a netns.
// Kept in one section so the core helper's edits of this file do not collide with it.
// ======================================================================================

/// An `ifreq` carrying an interface name (at most 15 bytes, as the kernel's IFNAMSIZ allows).
fn ifreq_for(name: &str) -> std::io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value (empty name, zero union).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn ioctl_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)
}

/// The SIOCGIFFLAGS flags of interface `name` in the calling thread's network namespace.
pub fn interface_flags(name: &str) -> std::io::Result<i32> {
    use std::os::fd::AsRawFd;
    let sock = ioctl_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: valid socket fd and a properly initialised ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }) & 0xffff)
}

/// Sets IFF_UP on interface `name` in the calling thread's network namespace (no process spawned).
pub fn set_interface_up(name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = ioctl_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the flags member was filled by SIOCGIFFLAGS; we only OR a bit into it.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: valid fd and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` enter the network namespace `netns` (an open /proc/PID/ns/net) before exec.
pub fn command_in_netns(cmd: &mut std::process::Command, netns: std::os::fd::OwnedFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and only calls setns(2), which is
    // async-signal-safe; the fd is owned by the closure and so stays open until then.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
}
