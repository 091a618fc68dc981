//! Parent <-> child synchronisation over a SOCK_SEQPACKET socketpair (one send = one message).
//!
//! Both ends are close-on-exec, so when the child's exec succeeds the parent reads end-of-file: that is how
//! it learns the container command started (no extra message, no race). A failing child sends an
//! [`Msg::Error`] with the exit status it will use (125, 126 or 127) and a one-line reason first.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

pub struct Channel(OwnedFd);

#[derive(Debug)]
pub enum Msg {
    /// Parent -> child: continue (maps written, network set up, FUSE served …).
    Go,
    /// Child -> parent: setup or exec failed.
    Error { code: u8, message: String },
    /// Child -> parent: the rootfs is ready (CLOCK_MONOTONIC ns), for the phase timestamps.
    RootfsDone(u64),
    /// Child -> parent: the /dev/fuse fd of the rootfs it mounted; the parent serves it and answers Go.
    FuseFd(OwnedFd),
    /// Parent -> child, before Go: a detached (idmapped) mount to use as the rootfs.
    RootTree(OwnedFd),
    /// Child -> parent (OCI `create`): setup is done; the child now waits at its start gate.
    Waiting,
    /// Parent -> child, after Go ([`super::CgroupEntry::Late`]): one v1 `tasks` file of its cgroup.
    CgroupTask(OwnedFd),
    /// Parent -> child: every `tasks` file has been sent; the child joins before its cgroup mount.
    CgroupReady,
}

pub fn pair() -> Result<(Channel, Channel), Errno> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn send(&self, msg: &Msg) -> Result<(), Errno> {
        let mut buf = Vec::with_capacity(64);
        let fds: [RawFd; 1];
        let cmsgs: &[ControlMessage<'_>] = match msg {
            Msg::Go => {
                buf.push(b'G');
                &[]
            }
            Msg::Error { code, message } => {
                buf.push(b'E');
                buf.push(*code);
                buf.extend_from_slice(message.as_bytes());
                &[]
            }
            Msg::Waiting => {
                buf.push(b'W');
                &[]
            }
            Msg::CgroupReady => {
                buf.push(b'C');
                &[]
            }
            Msg::RootfsDone(t) => {
                buf.push(b'R');
                buf.extend_from_slice(&t.to_le_bytes());
                &[]
            }
            Msg::FuseFd(fd) | Msg::RootTree(fd) | Msg::CgroupTask(fd) => {
                buf.push(match msg {
                    Msg::FuseFd(_) => b'F',
                    Msg::RootTree(_) => b'T',
                    _ => b'K',
                });
                fds = [fd.as_raw_fd()];
                &[ControlMessage::ScmRights(&fds)]
            }
        };
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(&buf)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Next message, or `None` at end-of-file (the peer exec'd or exited).
    pub fn recv(&self) -> Result<Option<Msg>, Errno> {
        let mut buf = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(r) => {
                    let mut fd = None;
                    for c in r.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for f in fds {
                                fd = Some(owned(f));
                            }
                        }
                    }
                    break (r.bytes, fd);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(match buf[0] {
            b'G' => Msg::Go,
            b'W' => Msg::Waiting,
            b'E' if n >= 2 => Msg::Error {
                code: buf[1],
                message: String::from_utf8_lossy(&buf[2..n]).into_owned(),
            },
            b'R' if n == 9 => Msg::RootfsDone(u64::from_le_bytes(
                buf[1..9].try_into().map_err(|_| Errno::EBADMSG)?,
            )),
            b'F' => Msg::FuseFd(fd.ok_or(Errno::EBADMSG)?),
            b'T' => Msg::RootTree(fd.ok_or(Errno::EBADMSG)?),
            b'K' => Msg::CgroupTask(fd.ok_or(Errno::EBADMSG)?),
            b'C' => Msg::CgroupReady,
            _ => return Err(Errno::EBADMSG),
        }))
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    crate::sys::owned_fd(fd)
}
