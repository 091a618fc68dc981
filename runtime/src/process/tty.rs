//! `strata run -t`: the container's command gets a pty of its own devpts (as with OCI `process.terminal`),
//! and strata relays between it and its own stdin and stdout, as `docker run -t` does: the caller's terminal,
//! when stdin is one, is put in raw mode for the container's life (so keys such as Ctrl-C reach the
//! container's line discipline and become its signals) and restored after, and its window size is passed on
//! at start and on every SIGWINCH.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::termios::{self, SetArg, Termios};

/// Receives the pty master the container's child sends over `console` (see `console::open_and_send`).
fn recv_master(console: &UnixStream) -> io::Result<OwnedFd> {
    // It was sent before the command was exec'd; never wait long for one that will not come.
    console.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut name = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(console),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            return Ok(crate::sys::owned_fd(fd));
        }
    }
    Err(io::Error::other(
        "the container sent no terminal (its set-up failed before the pty)",
    ))
}

/// The caller's window size (stdin's, else stdout's) as (rows, columns); None when neither is a terminal.
pub fn caller_size() -> Option<(u16, u16)> {
    crate::sys::window_size(io::stdin().as_fd())
        .or_else(|_| crate::sys::window_size(io::stdout().as_fd()))
        .ok()
        .map(|ws| (ws.ws_row, ws.ws_col))
}

/// The relay between strata's stdio and the container's pty, driven from strata's wait loop (one thread:
/// `strata exec` has joined the container's pid namespace, where the kernel refuses new threads).
/// Dropping it restores the caller's terminal.
pub struct Relay {
    master: OwnedFd,
    saved: Option<Termios>,
    /// Still reading strata's stdin (false after its end).
    pub stdin_open: bool,
}

impl Relay {
    /// The relay for the pty master the container's child sends over `console`.
    pub fn receive(console: &UnixStream) -> io::Result<Relay> {
        recv_master(console).and_then(Relay::start)
    }

    pub fn start(master: OwnedFd) -> io::Result<Relay> {
        let stdin = io::stdin();
        // Raw mode only on a terminal: piped input is passed as it is.
        let saved = match termios::tcgetattr(stdin.as_fd()) {
            Ok(t) => {
                let mut raw = t.clone();
                termios::cfmakeraw(&mut raw);
                termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
                Some(t)
            }
            Err(_) => None,
        };
        let relay = Relay {
            master,
            saved,
            stdin_open: true,
        };
        relay.resize();
        Ok(relay)
    }

    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Passes the caller's window size (stdin's, else stdout's) to the container's terminal.
    pub fn resize(&self) {
        if let Some(size) = caller_size() {
            let _ = crate::sys::set_window_size(self.master.as_fd(), size);
        }
    }

    /// strata's stdin is readable: pass what is there to the container.
    pub fn pump_stdin(&mut self) {
        let mut buf = [0u8; 8192];
        match nix::unistd::read(io::stdin().as_fd(), &mut buf) {
            Ok(0) => self.stdin_open = false,
            Ok(n) => {
                if write_all(self.master.as_fd(), &buf[..n]).is_err() {
                    self.stdin_open = false;
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => self.stdin_open = false,
        }
    }

    /// The pty is readable: pass its output on. False once it is gone (EIO: every slave fd closed).
    pub fn pump_output(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        match nix::unistd::read(self.master.as_fd(), &mut buf) {
            Ok(0) => false,
            Ok(n) => {
                let _ = write_all(io::stdout().as_fd(), &buf[..n]);
                true
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => true,
            Err(_) => false,
        }
    }

    /// After the process ended: what it wrote and strata has not relayed yet, without waiting for
    /// processes it left behind that may still hold the pty.
    pub fn drain(&mut self) {
        let readable = |fd: BorrowedFd<'_>| {
            let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
        };
        while readable(self.master.as_fd()) && self.pump_output() {}
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = self.saved.take() {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSADRAIN, &t);
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
