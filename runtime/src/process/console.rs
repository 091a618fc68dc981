//! `process.terminal` inside the container: the pty comes from the container's own devpts instance (opened
//! after the child is in the container's root), its master goes to the caller's `--console-socket` with
//! SCM_RIGHTS as runc sends it, and the slave becomes the process's terminal.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// Opens a pty through `/dev/ptmx` of the current root, sends its master over `console` and returns the
/// slave.
pub fn open_and_send(console: &UnixStream) -> io::Result<OwnedFd> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        // The session leader takes it as its controlling terminal explicitly (TIOCSCTTY).
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open(&name)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {name}: {e}")))?
        .into();
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console.as_raw_fd(),
        &[io::IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(slave)
}
