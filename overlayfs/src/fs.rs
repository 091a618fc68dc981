//! fuser::Filesystem: thin dispatch of each request into the overlay, counting it, and always
//! replying (an errno if nothing else).

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle as Fh, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::ovl::{Handle, Overlay};
use crate::stats::{Counters as OpStats, Op};
use crate::write::{Caller, Make};

/// The filesystem object handed to fuser.
#[derive(Debug)]
pub struct OverlayFs {
    /// Shared state.
    pub ovl: Arc<Overlay>,
    /// Request counters.
    pub stats: Arc<OpStats>,
    /// Where the serving threads should run.
    pub placement: Arc<crate::placement::Placement>,
}

fn e(err: nix::errno::Errno) -> Errno {
    Errno::from_i32(err as i32)
}

const GEN: Generation = Generation(0);

impl OverlayFs {
    /// Every request starts here: counted, and its thread moved if the server's CPUs changed.
    fn enter(&self, op: Op) {
        self.stats.count(op);
        self.placement.apply();
    }

    fn caller(req: &Request, umask: u32) -> Caller {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            umask,
        }
    }

    fn reply_entry(
        &self,
        reply: ReplyEntry,
        r: Result<(Arc<crate::inodes::Node>, fuser::FileAttr), nix::errno::Errno>,
    ) {
        match r {
            Ok((node, attr)) => {
                reply.entry_with_ttls(&self.ovl.attr_ttl(&node), &self.ovl.ttl(&node), &attr, GEN)
            }
            Err(err) => reply.error(e(err)),
        }
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        what: Make,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.ovl.node(parent).and_then(|p| {
            self.ovl
                .create_entry(&p, name, what, Self::caller(req, umask))
        });
        self.reply_entry(reply, r);
    }
}

impl Filesystem for OverlayFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(cap);
        }
        if self.ovl.cfg.passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.ovl.passthrough.store(true, Ordering::Relaxed);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.enter(Op::Lookup);
        let r = self
            .ovl
            .node(parent)
            .and_then(|p| self.ovl.lookup(&p, name, true));
        if let Err(nix::errno::Errno::ENOENT) = r {
            // A negative entry (nodeid 0) the kernel may cache: names only appear through us,
            // and the kernel updates its cache on our own creates.
            let neg = fuser::FileAttr {
                ino: INodeNo(0),
                ..self.ovl.blank_attr()
            };
            return reply.entry(&self.ovl.cfg.upper_ttl, &neg, GEN);
        }
        self.reply_entry(reply, r);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.enter(Op::Forget);
        self.ovl.table.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<Fh>, reply: ReplyAttr) {
        self.enter(Op::Getattr);
        let r = self.ovl.node(ino).and_then(|n| {
            let unlinked = n.state.read().unlinked;
            let st = match (unlinked, fh) {
                (true, Some(fh)) => self.ovl.with_fd(fh.0, |fd, _| nix::sys::stat::fstat(fd))?,
                _ => self.ovl.stat(&n)?,
            };
            Ok((self.ovl.attr_from(&n, &st), self.ovl.attr_ttl(&n)))
        });
        match r {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(err) => reply.error(e(err)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<Fh>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.enter(Op::Setattr);
        let r = self.ovl.node(ino).and_then(|n| {
            self.ovl
                .setattr(&n, mode, uid, gid, size, atime, mtime, fh.map(|f| f.0))
                .map(|a| (a, self.ovl.attr_ttl(&n)))
        });
        match r {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(err) => reply.error(e(err)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.enter(Op::Readlink);
        match self.ovl.node(ino).and_then(|n| self.ovl.readlink(&n)) {
            Ok(t) => reply.data(t.as_encoded_bytes()),
            Err(err) => reply.error(e(err)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.enter(Op::Mknod);
        let what = if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 {
            Make::File(mode & 0o7777)
        } else {
            Make::Node(mode, rdev as u64)
        };
        self.make(req, parent, name, what, umask, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.enter(Op::Mkdir);
        self.make(req, parent, name, Make::Dir(mode & 0o7777), umask, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.enter(Op::Unlink);
        match self
            .ovl
            .node(parent)
            .and_then(|p| self.ovl.remove_entry(&p, name, false))
        {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.enter(Op::Rmdir);
        match self
            .ovl
            .node(parent)
            .and_then(|p| self.ovl.remove_entry(&p, name, true))
        {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.enter(Op::Symlink);
        self.make(
            req,
            parent,
            link_name,
            Make::Symlink(target.as_os_str().to_owned()),
            0,
            reply,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.enter(Op::Rename);
        let r = self.ovl.node(parent).and_then(|p| {
            let np = self.ovl.node(newparent)?;
            self.ovl.rename(&p, name, &np, newname, flags.bits())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.enter(Op::Link);
        let r = self.ovl.node(ino).and_then(|n| {
            if n.is_dir() {
                return Err(nix::errno::Errno::EPERM);
            }
            let p = self.ovl.node(newparent)?;
            self.ovl.copy_up(&n, true)?;
            let l = self.ovl.upper_loc(&n)?;
            self.ovl.create_entry(
                &p,
                newname,
                Make::Link(l.dir.clone(), l.name.clone()),
                Self::caller(req, 0),
            )
        });
        self.reply_entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.enter(Op::Open);
        let r = self.ovl.node(ino).and_then(|n| {
            self.ovl
                .open_file(&n, flags.0, None, &|fd| reply.open_backing(fd.as_fd()))
        });
        match r {
            Ok(o) => match &o.backing {
                Some(b) => reply.opened_passthrough(Fh(o.fh), o.flags, b),
                None => reply.opened(Fh(o.fh), o.flags),
            },
            Err(err) => reply.error(e(err)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.enter(Op::Read);
        match self.ovl.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(err) => reply.error(e(err)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.enter(Op::Write);
        match self.ovl.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(err) => reply.error(e(err)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: Fh,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.enter(Op::Flush);
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.enter(Op::Release);
        self.ovl.remove_handle(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: Fh, datasync: bool, reply: ReplyEmpty) {
        self.enter(Op::Fsync);
        if !self.ovl.cfg.fsync {
            return reply.ok();
        }
        let r = self.ovl.with_fd(fh.0, |fd, _| {
            if datasync {
                nix::unistd::fdatasync(fd)?
            } else {
                nix::unistd::fsync(fd)?
            }
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.enter(Op::Opendir);
        match self.ovl.node(ino).and_then(|n| {
            let fh = self.ovl.open_dir(&n)?;
            Ok((fh, n.state.read().upper))
        }) {
            Ok((fh, upper)) => {
                // Let the kernel cache listings. Lower-only directories never change; for the
                // others the kernel revalidates its cache against the directory's mtime and its
                // own change counter, and every change reaches the upper copy's mtime.
                let flags = if upper {
                    FopenFlags::FOPEN_CACHE_DIR
                } else {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                };
                reply.opened(Fh(fh), flags)
            }
            Err(err) => reply.error(e(err)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.enter(Op::Readdir);
        let h = match self.ovl.handle(fh.0) {
            Ok(h) => h,
            Err(err) => return reply.error(e(err)),
        };
        let Handle::Dir(d) = &*h else {
            return reply.error(Errno::ENOTDIR);
        };
        let entries = match d.entries(&self.ovl) {
            Ok(e) => e,
            Err(err) => return reply.error(e(err)),
        };
        for (i, ent) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ent.ino), (i + 1) as u64, ent.kind, &ent.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.enter(Op::Readdirplus);
        let h = match self.ovl.handle(fh.0) {
            Ok(h) => h,
            Err(err) => return reply.error(e(err)),
        };
        let Handle::Dir(d) = &*h else {
            return reply.error(Errno::ENOTDIR);
        };
        let entries = match d.entries(&self.ovl) {
            Ok(e) => e,
            Err(err) => return reply.error(e(err)),
        };
        for (i, ent) in entries.iter().enumerate().skip(offset as usize) {
            let off = (i + 1) as u64;
            if i < 2 {
                // "." and "..": the kernel takes no lookup for them.
                let node = if i == 0 {
                    Some(d.node.clone())
                } else {
                    d.node.state.read().parent.clone().or(Some(d.node.clone()))
                };
                let Some(node) = node else { continue };
                let Ok(attr) = self.ovl.attr(&node) else {
                    continue;
                };
                let mut attr = attr;
                attr.ino = INodeNo(ent.ino);
                if reply.add(
                    INodeNo(ent.ino),
                    off,
                    &ent.name,
                    &Duration::ZERO,
                    &attr,
                    GEN,
                ) {
                    break;
                }
                continue;
            }
            let Ok((node, attr)) = self
                .ovl
                .lookup_from(&d.node, &ent.name, true, Some(ent.layer))
            else {
                continue;
            };
            let ttl = self.ovl.ttl(&node);
            if reply.add(INodeNo(node.ino), off, &ent.name, &ttl, &attr, GEN) {
                // Not sent: give the lookup back.
                self.ovl.table.forget(node.ino, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.enter(Op::Releasedir);
        self.ovl.remove_handle(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: Fh, _datasync: bool, reply: ReplyEmpty) {
        self.enter(Op::Fsync);
        let r = self.ovl.node(ino).and_then(|n| {
            if let Some(fd) = n.state.read().top_dir().map(|d| d.1.clone()) {
                if self.ovl.cfg.fsync {
                    let rd = crate::layers::open_for_listing(fd.as_ref())?;
                    nix::unistd::fsync(&rd)?;
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.enter(Op::Statfs);
        match self.ovl.statfs() {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                255,
                s.fragment_size() as u32,
            ),
            Err(err) => reply.error(e(err)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.enter(Op::Setxattr);
        match self
            .ovl
            .node(ino)
            .and_then(|n| self.ovl.setxattr(&n, name, value, flags))
        {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.enter(Op::Getxattr);
        match self.ovl.node(ino).and_then(|n| self.ovl.getxattr(&n, name)) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() <= size as usize => reply.data(&v),
            Ok(_) => reply.error(Errno::ERANGE),
            Err(err) => reply.error(e(err)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.enter(Op::Listxattr);
        match self.ovl.node(ino).and_then(|n| self.ovl.listxattr(&n)) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() <= size as usize => reply.data(&v),
            Ok(_) => reply.error(Errno::ERANGE),
            Err(err) => reply.error(e(err)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.enter(Op::Removexattr);
        match self
            .ovl
            .node(ino)
            .and_then(|n| self.ovl.removexattr(&n, name))
        {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Only called without default_permissions: check the mode bits against the caller
        // (supplementary groups are not known here).
        self.enter(Op::Access);
        let r = self.ovl.node(ino).and_then(|n| {
            let a = self.ovl.attr(&n)?;
            let want = mask.bits() & 7;
            if want & libc::W_OK != 0 && !self.ovl.writable() {
                return Err(nix::errno::Errno::EROFS);
            }
            let perm = a.perm as i32;
            let bits = if req.uid() == 0 {
                // root: everything, except execute needs some x bit on non-directories.
                if want & libc::X_OK != 0
                    && a.kind != fuser::FileType::Directory
                    && perm & 0o111 == 0
                {
                    return Err(nix::errno::Errno::EACCES);
                }
                7
            } else if req.uid() == a.uid {
                (perm >> 6) & 7
            } else if req.gid() == a.gid {
                (perm >> 3) & 7
            } else {
                perm & 7
            };
            if want & !bits != 0 {
                Err(nix::errno::Errno::EACCES)
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.enter(Op::Create);
        let r = self.ovl.node(parent).and_then(|p| {
            let (node, attr, created) = match self.ovl.create_entry_fd(
                &p,
                name,
                Make::File(mode & 0o7777),
                Self::caller(req, umask),
            ) {
                Ok((n, a, fd)) => (n, a, Some(fd)),
                Err(nix::errno::Errno::EEXIST) if flags & libc::O_EXCL == 0 => {
                    let (n, a) = self.ovl.lookup(&p, name, true)?;
                    (n, a, None)
                }
                Err(err) => return Err(err),
            };
            // A file we just made is empty: like the kernel (which skips the truncate of a file
            // the open created), do not truncate it. On ext4 a truncate to 0 also arms
            // auto_da_alloc, which forces block allocation at close and makes both the create
            // and a later unlink several times slower.
            let fresh = created.is_some();
            let mut open_flags = flags & !(libc::O_CREAT | libc::O_EXCL);
            if fresh {
                open_flags &= !libc::O_TRUNC;
            }
            let opened = match self
                .ovl
                .open_file(&node, open_flags, created.flatten(), &|fd| {
                    reply.open_backing(fd.as_fd())
                }) {
                Ok(o) => o,
                Err(err) => {
                    self.ovl.table.forget(node.ino, 1);
                    return Err(err);
                }
            };
            // A file we just made is empty: its attributes are known. An existing one may have
            // been truncated by the open.
            let attr = if fresh { attr } else { self.ovl.attr(&node)? };
            Ok((node, attr, opened))
        });
        match r {
            Ok((node, attr, o)) => {
                let ttl = self.ovl.ttl(&node);
                match &o.backing {
                    Some(b) => reply.created_passthrough(&ttl, &attr, GEN, Fh(o.fh), o.flags, b),
                    None => reply.created(&ttl, &attr, GEN, Fh(o.fh), o.flags),
                }
            }
            Err(err) => reply.error(e(err)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.enter(Op::Fallocate);
        let r = self.ovl.with_fd(fh.0, |fd, upper| {
            if !upper {
                return Err(nix::errno::Errno::EBADF);
            }
            nix::fcntl::fallocate(
                fd,
                nix::fcntl::FallocateFlags::from_bits_truncate(mode),
                offset as i64,
                length as i64,
            )?;
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(e(err)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: Fh,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.enter(Op::Lseek);
        let r = self.ovl.with_fd(fh.0, |fd, _| {
            let w = match whence {
                libc::SEEK_SET => nix::unistd::Whence::SeekSet,
                libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
                libc::SEEK_END => nix::unistd::Whence::SeekEnd,
                libc::SEEK_DATA => nix::unistd::Whence::SeekData,
                libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
                _ => return Err(nix::errno::Errno::EINVAL),
            };
            nix::unistd::lseek(fd, offset, w)
        });
        match r {
            Ok(o) => reply.offset(o),
            Err(err) => reply.error(e(err)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: Fh,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.enter(Op::CopyFileRange);
        let r = self.ovl.with_fd(fh_in.0, |fin, _| {
            self.ovl.with_fd(fh_out.0, |fout, upper| {
                if !upper {
                    return Err(nix::errno::Errno::EBADF);
                }
                let mut oi = offset_in as i64;
                let mut oo = offset_out as i64;
                nix::fcntl::copy_file_range(fin, Some(&mut oi), fout, Some(&mut oo), len as usize)
            })
        });
        match r {
            Ok(n) => reply.written(n as u32),
            Err(err) => reply.error(e(err)),
        }
    }
}
