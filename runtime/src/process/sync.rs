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
    /// Parent -> child, after Go ([`super::CgroupEntry::Late`]): every v1 `tasks` file of its cgroup,
    /// in one message (one wake-up of the waiting child); it joins before its cgroup mount.
    Cgroup(Vec<OwnedFd>),
    /// Parent -> child, after [`Msg::Cgroup`]: the cgroup's limits are written and the loopback of a new
    /// network namespace is up (done while the child mounts its cgroupfs). The child waits for it before
    /// its command.
    CgroupReady,
    /// Parent -> child, after Go ([`super::ChildPlan::net_from_parent`]): the network namespace strata
    /// made for it, loopback up; the child enters it before its /sys mount.
    NetNs(OwnedFd),
    /// Parent -> child, before [`Msg::Cgroup`]: its /sys/fs/cgroup, the tmpfs with every hierarchy in
    /// it, mounted detached (`rootfs::CgroupFs::prepared_tree`).
    CgroupfsTree(OwnedFd),
}

/// The most fds one message carries (v1 has a dozen hierarchies at most).
const MAX_FDS: usize = 32;

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
        let fds: Vec<RawFd>;
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
                buf.push(b'N');
                &[]
            }
            Msg::Cgroup(tasks) => {
                if tasks.len() > MAX_FDS {
                    return Err(Errno::E2BIG);
                }
                buf.push(b'C');
                fds = tasks.iter().map(|f| f.as_raw_fd()).collect();
                &[ControlMessage::ScmRights(&fds)]
            }
            Msg::RootfsDone(t) => {
                buf.push(b'R');
                buf.extend_from_slice(&t.to_le_bytes());
                &[]
            }
            Msg::FuseFd(fd) | Msg::RootTree(fd) | Msg::NetNs(fd) | Msg::CgroupfsTree(fd) => {
                buf.push(match msg {
                    Msg::FuseFd(_) => b'F',
                    Msg::NetNs(_) => b'S',
                    Msg::CgroupfsTree(_) => b'Y',
                    _ => b'T',
                });
                fds = vec![fd.as_raw_fd()];
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
        self.recv_flags(MsgFlags::empty())
    }

    /// The next message if one is queued, without waiting (`None` also when none is).
    pub fn recv_queued(&self) -> Result<Option<Msg>, Errno> {
        match self.recv_flags(MsgFlags::MSG_DONTWAIT) {
            Err(Errno::EAGAIN) => Ok(None),
            r => r,
        }
    }

    fn recv_flags(&self, flags: MsgFlags) -> Result<Option<Msg>, Errno> {
        let mut buf = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (n, mut fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC | flags,
            ) {
                Ok(r) => {
                    let mut fds = Vec::new();
                    for c in r.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(got) = c {
                            fds.extend(got.into_iter().map(owned));
                        }
                    }
                    break (r.bytes, fds);
                }
                // ECONNRESET: the peer closed with our messages unread. The kernel says so once
                // (and forgets it) before the messages the peer had sent, then end-of-file.
                Err(Errno::EINTR | Errno::ECONNRESET) => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(match buf[0] {
            b'G' => Msg::Go,
            b'W' => Msg::Waiting,
            b'N' => Msg::CgroupReady,
            b'E' if n >= 2 => Msg::Error {
                code: buf[1],
                message: String::from_utf8_lossy(&buf[2..n]).into_owned(),
            },
            b'R' if n == 9 => Msg::RootfsDone(u64::from_le_bytes(
                buf[1..9].try_into().map_err(|_| Errno::EBADMSG)?,
            )),
            b'F' if fds.len() == 1 => Msg::FuseFd(fds.pop().ok_or(Errno::EBADMSG)?),
            b'T' if fds.len() == 1 => Msg::RootTree(fds.pop().ok_or(Errno::EBADMSG)?),
            b'S' if fds.len() == 1 => Msg::NetNs(fds.pop().ok_or(Errno::EBADMSG)?),
            b'Y' if fds.len() == 1 => Msg::CgroupfsTree(fds.pop().ok_or(Errno::EBADMSG)?),
            b'C' => Msg::Cgroup(fds),
            _ => return Err(Errno::EBADMSG),
        }))
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    crate::sys::owned_fd(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_cgroup_message_carries_all_its_fds_at_once() {
        let (a, b) = pair().unwrap();
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..9).map(|_| nix::unistd::pipe().unwrap()).collect();
        let (readers, writers): (Vec<_>, Vec<_>) = pipes.into_iter().unzip();
        a.send(&Msg::Cgroup(writers)).unwrap();
        a.send(&Msg::Go).unwrap();
        let Some(Msg::Cgroup(got)) = b.recv().unwrap() else {
            panic!("expected the cgroup message first")
        };
        assert_eq!(got.len(), 9);
        // Each received fd is the write end of its own pipe, in order.
        for (i, (w, r)) in got.into_iter().zip(readers).enumerate() {
            std::fs::File::from(w).write_all(&[i as u8]).unwrap();
            let mut byte = [0u8];
            std::fs::File::from(r).read_exact(&mut byte).unwrap();
            assert_eq!(byte[0], i as u8);
        }
        assert!(matches!(b.recv().unwrap(), Some(Msg::Go)));
    }

    #[test]
    fn a_queued_message_outlives_its_sender_and_nothing_queued_does_not_block() {
        let (a, b) = pair().unwrap();
        assert!(matches!(b.recv_queued(), Ok(None)));
        a.send(&Msg::Error {
            code: 125,
            message: "setting the hostname: EINVAL".into(),
        })
        .unwrap();
        drop(a);
        // The sender is gone: its last word is still there, then end-of-file.
        match b.recv_queued().unwrap() {
            Some(Msg::Error { code, message }) => {
                assert_eq!(
                    (code, message.as_str()),
                    (125, "setting the hostname: EINVAL")
                );
            }
            _ => panic!("expected the queued error"),
        }
        assert!(matches!(b.recv_queued(), Ok(None)));
    }

    #[test]
    fn a_peer_that_closed_with_our_messages_unread_still_has_its_last_word_read() {
        for recv in [Channel::recv, Channel::recv_queued] {
            let (a, b) = pair().unwrap();
            b.send(&Msg::Go).unwrap();
            a.send(&Msg::Error {
                code: 125,
                message: "mounting: EINVAL".into(),
            })
            .unwrap();
            // `a` never read our Go: closing it resets the connection.
            drop(a);
            assert!(matches!(recv(&b), Ok(Some(Msg::Error { code: 125, .. }))));
            assert!(matches!(recv(&b), Ok(None)));
        }
    }

    #[test]
    fn a_network_namespace_message_carries_its_fd() {
        let (a, b) = pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        a.send(&Msg::NetNs(w)).unwrap();
        let Some(Msg::NetNs(got)) = b.recv().unwrap() else {
            panic!("expected the network namespace message")
        };
        std::fs::File::from(got).write_all(b"x").unwrap();
        let mut byte = [0u8];
        std::fs::File::from(r).read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
    }
}
