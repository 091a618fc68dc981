//! Open files: copy-up on a writing open, passthrough (one backing file per inode, clean fallback),
//! and the read/write path used when passthrough is off.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use fuser::{BackingId, FileType, FopenFlags};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::inodes::Node;
use crate::ovl::{FileHandle, Handle, OpResult, Overlay};

/// How to answer an open.
#[derive(Debug)]
pub struct Opened {
    /// fh.
    pub fh: u64,
    /// FOPEN_* flags.
    pub flags: FopenFlags,
    /// Backing id to answer with, when passthrough is used.
    pub backing: Option<Arc<BackingId>>,
}

fn wants_write(flags: i32) -> bool {
    (flags & libc::O_ACCMODE) != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl Overlay {
    /// Open regular file `node`. `make_backing` registers an fd with the kernel for passthrough.
    /// `created` is the read-write fd of a file the create request just made: it serves as the
    /// backing file, and as the open file too when `flags` ask for no status flag of their own.
    pub fn open_file(
        &self,
        node: &Arc<Node>,
        flags: i32,
        created: Option<OwnedFd>,
        make_backing: &dyn Fn(&OwnedFd) -> std::io::Result<BackingId>,
    ) -> OpResult<Opened> {
        if node.kind != FileType::RegularFile {
            return Err(if node.is_dir() {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        if wants_write(flags) {
            if !self.writable() {
                return Err(Errno::EROFS);
            }
            self.copy_up(node, flags & libc::O_TRUNC == 0)?;
            node.data_changed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let loc = self.loc(node)?;
        let upper = self.stack.is_upper(loc.layer);
        let status =
            libc::O_APPEND | libc::O_DIRECT | libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME;
        // The caller's open reuses the created fd when it asks for no status flag of its own; the
        // created fd (plain read-write) backs passthrough either way — never a caller's fd: its
        // status flags, O_DIRECT say, would apply to every open of the inode.
        let mut created = created.filter(|_| upper);
        let reuse = created.is_some() && flags & status == 0;
        let fd = match created.take_if(|_| reuse) {
            Some(c) => c,
            None => self.open_real(&loc, flags)?,
        };
        let fresh_rw = if reuse { Some(&fd) } else { created.as_ref() };
        // No FLUSH on close: there is nothing to flush (writes reach the real file at once).
        let mut fopen = FopenFlags::FOPEN_NOFLUSH;
        let mut backing = None;
        if self.passthrough.load(std::sync::atomic::Ordering::Relaxed) {
            let mut map = self.backings.lock();
            let existing = map
                .get(&node.ino)
                .and_then(|(w, u)| w.upgrade().map(|b| (b, *u)));
            match existing {
                Some((b, u)) if u == upper => backing = Some(b),
                // Copied up (e.g. by a rename) while its lower copy is passthrough-open, e.g. a
                // running busybox: a read-only open may read the same data through the lower
                // backing file. Serving it ourselves (direct I/O) would make exec fail with EIO.
                Some((b, false))
                    if upper
                        && !wants_write(flags)
                        && !node.data_changed.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    backing = Some(b)
                }
                Some(_) => {
                    // The inode is passthrough-open on its other copy: the kernel refuses a second
                    // backing file, so serve this open ourselves, uncached.
                    fopen |= FopenFlags::FOPEN_DIRECT_IO;
                }
                None => {
                    let acc = if upper {
                        OFlag::O_RDWR
                    } else {
                        OFlag::O_RDONLY
                    };
                    let opened;
                    let bfd = match fresh_rw {
                        Some(f) => Ok(f),
                        None => {
                            opened = nix::fcntl::openat(
                                loc.dirfd(),
                                &*loc.name,
                                acc | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                                Mode::empty(),
                            );
                            opened.as_ref().map_err(|e| *e)
                        }
                    };
                    if let Ok(bfd) = bfd {
                        if let Ok(b) = make_backing(bfd) {
                            let b = Arc::new(b);
                            map.insert(node.ino, (Arc::downgrade(&b), upper));
                            backing = Some(b);
                        }
                    }
                }
            }
        }
        if backing.is_none() && !upper && !fopen.contains(FopenFlags::FOPEN_DIRECT_IO) {
            // Lower files never change: the page cache may keep their data.
            fopen |= FopenFlags::FOPEN_KEEP_CACHE;
        }
        let fh = self.add_handle(Handle::File(FileHandle {
            node: node.clone(),
            fd,
            upper,
            backing: backing.clone(),
        }));
        Ok(Opened {
            fh,
            flags: fopen,
            backing,
        })
    }

    /// pread on an open file.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        let h = self.file(fh)?;
        let Handle::File(f) = &*h else {
            return Err(Errno::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut got = 0usize;
        while got < buf.len() {
            let n = nix::sys::uio::pread(&f.fd, &mut buf[got..], (offset + got as u64) as i64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// pwrite on an open file (O_APPEND files append).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> OpResult<u32> {
        let h = self.file(fh)?;
        let Handle::File(f) = &*h else {
            return Err(Errno::EBADF);
        };
        if !f.upper {
            return Err(Errno::EBADF);
        }
        let fl = nix::fcntl::fcntl(&f.fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let n = if fl & libc::O_APPEND != 0 {
            nix::unistd::write(&f.fd, data)?
        } else {
            nix::sys::uio::pwrite(&f.fd, data, offset as i64)?
        };
        Ok(n as u32)
    }

    /// The real fd of an open file (for fsync, fallocate, lseek, copy_file_range).
    pub fn with_fd<T>(
        &self,
        fh: u64,
        f: impl FnOnce(std::os::fd::BorrowedFd<'_>, bool) -> OpResult<T>,
    ) -> OpResult<T> {
        let h = self.file(fh)?;
        let Handle::File(fhd) = &*h else {
            return Err(Errno::EBADF);
        };
        f(fhd.fd.as_fd(), fhd.upper)
    }
}
