//! `strata run -t`: the container's command gets a pty of its own devpts (as with OCI `process.terminal`),
//! and strata relays between it and its own stdin and stdout, as `docker run -t` does: the caller's terminal,
//! when stdin is one, is put in raw mode for the container's life (so keys such as Ctrl-C reach the
//! container's line discipline and become its signals) and restored after, and its window size is passed on
//! at start and on every SIGWINCH.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::termios::{self, SetArg, Termios};

/// Receives the pty master the container's child sends over `console` (see `console::open_and_send`).
pub fn recv_master(console: &UnixStream) -> io::Result<OwnedFd> {
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

/// The relay between strata's stdio and the container's pty. [`Relay::finish`] waits for the container's
/// output to drain and restores the caller's terminal; dropping it restores the terminal too.
pub struct Relay {
    master: std::sync::Arc<OwnedFd>,
    output: Option<JoinHandle<()>>,
    saved: Option<Termios>,
}

impl Relay {
    pub fn start(master: OwnedFd) -> io::Result<Relay> {
        let master = std::sync::Arc::new(master);
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
        // From here on, dropping `relay` (an error below) restores the terminal.
        let mut relay = Relay {
            master: master.clone(),
            output: None,
            saved,
        };
        relay.resize();
        // Each direction owns a file of its own on the master.
        let mut from_pty = std::fs::File::from(master.try_clone()?);
        let mut to_pty = std::fs::File::from(master.try_clone()?);
        let output = std::thread::Builder::new()
            .name("tty-out".into())
            .spawn(move || copy(&mut from_pty, &mut io::stdout()))?;
        // Never joined: it blocks on strata's stdin, which may outlive the container; exit ends it.
        std::thread::Builder::new()
            .name("tty-in".into())
            .spawn(move || copy(&mut io::stdin(), &mut to_pty))?;
        relay.output = Some(output);
        Ok(relay)
    }

    /// Passes the caller's window size (stdin's, else stdout's) to the container's terminal.
    pub fn resize(&self) {
        let size = crate::sys::window_size(io::stdin().as_fd())
            .or_else(|_| crate::sys::window_size(io::stdout().as_fd()));
        if let Ok(ws) = size {
            let _ = crate::sys::set_window_size(self.master.as_fd(), &ws);
        }
    }

    /// After the container ended: everything it wrote is relayed (its pty reads EIO once the last of its
    /// processes closed it), then the caller's terminal is restored.
    pub fn finish(mut self) {
        if let Some(h) = self.output.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = self.saved.take() {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSADRAIN, &t);
        }
    }
}

/// Copies until end of input or an error (a pty master reads EIO when its slave is gone), flushing after
/// every read so output appears as it comes.
fn copy(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}
