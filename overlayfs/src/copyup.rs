//! Copy-up: before the first change to an object that lives in a lower layer, its parents and then
//! the object itself are copied into the upper layer. Each object is built under a temporary name
//! in our staging directory inside workdir (data, owner, mode, xattrs, times) and renamed into place,
//! so a crash never exposes a partial file.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fuser::FileType;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::inodes::Node;
use crate::layers;
use crate::ovl::{OpResult, Overlay, io_errno};
use crate::sys;

/// Name of our staging directory inside workdir.
pub const STAGE_DIR: &str = "strata-stage";

impl Overlay {
    /// The staging directory fd, made in workdir at the first call.
    pub fn stage(&self) -> OpResult<BorrowedFd<'_>> {
        if let Some(fd) = self.stage_dir.get() {
            return Ok(fd.as_fd());
        }
        let work = self.stack.work.as_ref().ok_or(Errno::EROFS)?;
        match nix::sys::stat::mkdirat(work, STAGE_DIR, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        // Another thread may have made it first: either fd names the same directory.
        let _ = self
            .stage_dir
            .set(layers::open_subdir(work.as_fd(), OsStr::new(STAGE_DIR))?);
        self.stage_dir.get().map(|f| f.as_fd()).ok_or(Errno::EIO)
    }

    /// A fresh temporary name in the staging directory.
    pub fn stage_name(&self) -> OsString {
        let n = self.stage_counter.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!("#{}-{}", std::process::id(), n))
    }

    /// Make sure directory `node` (and its parents) exist in the upper layer.
    pub fn copy_up_dir(&self, node: &Arc<Node>) -> OpResult<()> {
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        if node.state.read().upper {
            return Ok(());
        }
        self.copy_up(node, true)
    }

    /// Copy `node` into the upper layer (no-op when already there). Without `with_data` a regular
    /// file is copied with size 0 (an O_TRUNC open or a truncate to 0 follows).
    pub fn copy_up(&self, node: &Arc<Node>, with_data: bool) -> OpResult<()> {
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        if !node.is_dir() && node.state.read().lower_nlink > 1 {
            return self.copy_up_alias(node, with_data);
        }
        if node.state.read().upper {
            return Ok(());
        }
        self.copy_up_object(node, with_data)
    }

    /// Copy-up before an xattr change. Like the kernel, a hard-linked lower file whose inode is
    /// already in the upper layer is changed there without linking the alias it came through.
    pub fn copy_up_for_xattr(&self, node: &Arc<Node>) -> OpResult<()> {
        if !node.is_dir() && node.state.read().upper && node.state.read().lower_nlink > 1 {
            node.state.write().via = None;
            return Ok(());
        }
        self.copy_up(node, true)
    }

    /// A hard-linked lower file, reached through the alias it was last looked up under: the
    /// first time, copy it up under that name; later, link that name to the upper inode (the
    /// kernel with index=on does the same, so the aliases stay one inode in the upper layer).
    fn copy_up_alias(&self, node: &Arc<Node>, with_data: bool) -> OpResult<()> {
        let via = node.state.write().via.take();
        let primary = |s: &crate::inodes::NodeState, p: &Arc<Node>, n: &OsStr| {
            s.parent.as_ref().is_some_and(|sp| Arc::ptr_eq(sp, p)) && s.name == n
        };
        if !node.state.read().upper {
            if let Some((p, n)) = via {
                let mut s = node.state.write();
                if !s.upper && !primary(&s, &p, &n) {
                    s.parent = Some(p);
                    s.name = n;
                }
            }
            // copy_up_object counts the name it moves into upper, under its lock: several
            // threads may get here for one node and only one of them copies.
            return self.copy_up_object(node, with_data);
        }
        let Some((p, n)) = via else {
            return Ok(());
        };
        if primary(&node.state.read(), &p, &n) {
            return Ok(());
        }
        self.copy_up_dir(&p)?;
        let _guard = node.copyup_lock.lock();
        let udir = p.state.read().dir_fd(0).cloned().ok_or(Errno::EIO)?;
        if !matches!(layers::probe(udir.as_fd(), &n), Ok(layers::Probe::Missing)) {
            // Already in upper (linked earlier), or hidden: nothing to link.
            return Ok(());
        }
        let l = self.upper_loc(node)?;
        nix::unistd::linkat(l.dirfd(), &*l.name, udir.as_fd(), &*n, AtFlags::empty())?;
        {
            let mut s = node.state.write();
            s.lower_left = s.lower_left.saturating_sub(1);
        }
        self.note_alias(node, &p, &n);
        Ok(())
    }

    /// Copy a not-yet-copied `node` into the upper layer under its primary name.
    fn copy_up_object(&self, node: &Arc<Node>, with_data: bool) -> OpResult<()> {
        let parent = node.state.read().parent.clone().ok_or(Errno::EIO)?;
        self.copy_up_dir(&parent)?;
        let _guard = node.copyup_lock.lock();
        if node.state.read().upper {
            return Ok(());
        }
        let src = self.any_loc(node)?;
        let st = layers::lstat_at(src.dirfd(), &src.name)?;
        let (udir, name) = {
            let s = node.state.read();
            let p = parent.state.read();
            (p.dir_fd(0).cloned().ok_or(Errno::EIO)?, s.name.clone())
        };
        let stage = self.stage()?;
        let tmp = self.stage_name();
        let res = self.build_copy(node.kind, &src, &st, stage, &tmp, with_data);
        if let Err(e) = res {
            let _ = remove_staged(stage, &tmp, node.kind == FileType::Directory);
            return Err(e);
        }
        if let Err(e) = sys::renameat2(
            stage,
            &*tmp,
            udir.as_fd(),
            &*name,
            sys::RenameFlags::NOREPLACE,
        ) {
            let _ = remove_staged(stage, &tmp, node.kind == FileType::Directory);
            return Err(e);
        }
        let ust = layers::lstat_at(udir.as_fd(), &name)?;
        self.table
            .set_origin(self.stack.encode_ino(0, ust.st_ino), node.ino);
        let newfd = if node.is_dir() {
            Some(Arc::new(layers::open_subdir(udir.as_fd(), &name)?))
        } else {
            None
        };
        let mut s = node.state.write();
        s.upper = true;
        // One lower name of a hard-linked lower file is now an upper link (see Overlay::attr_from).
        s.lower_left = s.lower_left.saturating_sub(1);
        if let Some(fd) = newfd {
            s.dirs.insert(0, (0, fd));
        }
        Ok(())
    }

    fn build_copy(
        &self,
        kind: FileType,
        src: &crate::inodes::Loc,
        st: &FileStat,
        stage: BorrowedFd<'_>,
        tmp: &OsStr,
        with_data: bool,
    ) -> OpResult<()> {
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match kind {
            FileType::Directory => {
                nix::sys::stat::mkdirat(stage, tmp, Mode::from_bits_truncate(0o700))?
            }
            FileType::Symlink => {
                let target = nix::fcntl::readlinkat(src.dirfd(), &*src.name)?;
                nix::unistd::symlinkat(target.as_os_str(), stage, tmp)?;
            }
            FileType::RegularFile => {
                let out = nix::fcntl::openat(
                    stage,
                    tmp,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                if with_data && st.st_size > 0 {
                    let inp = nix::fcntl::openat(
                        src.dirfd(),
                        &*src.name,
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?;
                    copy_data(&inp, &out, st.st_size as u64)?;
                }
                if self.cfg.fsync {
                    nix::unistd::fsync(&out)?;
                }
            }
            FileType::CharDevice
            | FileType::BlockDevice
            | FileType::NamedPipe
            | FileType::Socket => {
                let sf = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
                nix::sys::stat::mknodat(stage, tmp, sf, perm, st.st_rdev)?;
            }
        }
        copy_xattrs(src, stage, tmp, kind == FileType::Directory)?;
        // The copy keeps the owner the file is shown with, stored as the upper layer stores it.
        let uid = self.cfg.upper_disk_uid(self.cfg.uid_map.shown(st.st_uid));
        let gid = self.cfg.upper_disk_gid(self.cfg.gid_map.shown(st.st_gid));
        nix::unistd::fchownat(
            stage,
            tmp,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        if kind != FileType::Symlink {
            // After chown, which clears setuid/setgid bits.
            nix::sys::stat::fchmodat(
                stage,
                tmp,
                perm,
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
        }
        let at = TimeSpec::new(st.st_atime, st.st_atime_nsec);
        let mt = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
        nix::sys::stat::utimensat(stage, tmp, &at, &mt, UtimensatFlags::NoFollowSymlink)?;
        Ok(())
    }
}

/// Copy `len` bytes with copy_file_range (reflink or in-kernel copy), falling back to read/write.
pub fn copy_data(inp: &OwnedFd, out: &OwnedFd, len: u64) -> OpResult<()> {
    let mut done: u64 = 0;
    let mut fallback = false;
    while done < len {
        let chunk = ((len - done).min(1 << 30)) as usize;
        if !fallback {
            let mut off_in = done as i64;
            let mut off_out = done as i64;
            match nix::fcntl::copy_file_range(
                inp,
                Some(&mut off_in),
                out,
                Some(&mut off_out),
                chunk,
            ) {
                Ok(0) => break,
                Ok(n) => {
                    done += n as u64;
                    continue;
                }
                Err(Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                    fallback = true
                }
                Err(e) => return Err(e),
            }
        }
        let mut buf = vec![0u8; chunk.min(1 << 20)];
        let n = nix::sys::uio::pread(inp, &mut buf, done as i64)?;
        if n == 0 {
            break;
        }
        let mut w = 0;
        while w < n {
            w += nix::sys::uio::pwrite(out, &buf[w..n], (done + w as u64) as i64)?;
        }
        done += n as u64;
    }
    Ok(())
}

/// Copy every xattr except the overlay's own from `src` to `stage/tmp`.
fn copy_xattrs(
    src: &crate::inodes::Loc,
    stage: BorrowedFd<'_>,
    tmp: &OsStr,
    is_dir: bool,
) -> OpResult<()> {
    let sname = if is_dir {
        None
    } else {
        Some(src.name.as_os_str())
    };
    let list = match sys::list_xattr(src.dirfd(), sname) {
        Ok(l) => l,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(io_errno(e)),
    };
    for item in list.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        if layers::is_private_xattr(item) {
            continue;
        }
        let name = OsStr::from_bytes(item);
        let val = match sys::get_xattr(src.dirfd(), sname, name) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(io_errno(e)),
        };
        if let Err(e) = sys::set_xattr(stage, Some(tmp), name, &val, 0) {
            // ACL/security xattrs the upper fs cannot hold are skipped like the kernel does for
            // EOPNOTSUPP; anything else fails the copy-up.
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(io_errno(e));
            }
        }
    }
    Ok(())
}

/// Remove a staged object (a directory recursively).
pub fn remove_staged(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> OpResult<()> {
    if is_dir {
        remove_tree(dir, name)
    } else {
        Ok(nix::unistd::unlinkat(
            dir,
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )?)
    }
}

/// rm -rf of `name` in `dir`, never following symlinks.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> OpResult<()> {
    let st = layers::lstat_at(dir, name)?;
    if (st.st_mode & libc::S_IFMT) == libc::S_IFDIR {
        let sub: OwnedFd = nix::fcntl::openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let names = sys::dir_names(sub.as_fd())?;
        for n in names {
            remove_tree(sub.as_fd(), &n)?;
        }
        nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir)?;
    } else {
        nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}
