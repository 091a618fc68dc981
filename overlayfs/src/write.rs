//! Changes to the merged view: creating, removing and renaming names (with whiteouts and opaque
//! directories), attribute and xattr changes. Every change to a lower object copies it up first.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use fuser::{FileAttr, FileType, TimeOrNow};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use crate::copyup::remove_tree;
use crate::inodes::Node;
use crate::layers::{self, Probe, WH_OPAQUE};
use crate::options::WhiteoutForm;
use crate::ovl::{OpResult, Overlay, io_errno};
use crate::sys;

/// What a create-type request makes.
#[derive(Debug, Clone)]
pub enum Make {
    /// A regular file (opened by the caller afterwards).
    File(u32),
    /// A directory.
    Dir(u32),
    /// A device, fifo or socket: mode with type bits, rdev.
    Node(u32, u64),
    /// A symlink to the target.
    Symlink(OsString),
    /// A hard link to an upper object (dir fd, name).
    Link(Arc<OwnedFd>, OsString),
}

/// The caller's identity for new objects.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// fsuid.
    pub uid: u32,
    /// fsgid.
    pub gid: u32,
    /// umask.
    pub umask: u32,
}

fn to_timespec(t: TimeOrNow) -> TimeSpec {
    match t {
        TimeOrNow::Now => TimeSpec::UTIME_NOW,
        TimeOrNow::SpecificTime(st) => match st.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                TimeSpec::new(-(d.as_secs() as i64), 0)
            }
        },
    }
}

impl Overlay {
    fn make_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        what: &Make,
        c: Caller,
        pgid_setgid: Option<u32>,
    ) -> OpResult<Option<OwnedFd>> {
        let mask = !c.umask & 0o7777;
        let mut file = None;
        match what {
            Make::File(mode) => {
                // Read-write, so the create path can serve the caller's open and the passthrough
                // backing file from this one fd.
                file = Some(nix::fcntl::openat(
                    dir,
                    name,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(mode & mask),
                )?);
            }
            Make::Dir(mode) => {
                nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode & mask))?
            }
            Make::Node(mode, rdev) => {
                let sf = SFlag::from_bits_truncate(mode & libc::S_IFMT);
                nix::sys::stat::mknodat(
                    dir,
                    name,
                    sf,
                    Mode::from_bits_truncate(mode & mask),
                    *rdev,
                )?;
            }
            Make::Symlink(target) => nix::unistd::symlinkat(target.as_os_str(), dir, name)?,
            Make::Link(sdir, sname) => {
                nix::unistd::linkat(sdir.as_fd(), sname.as_os_str(), dir, name, AtFlags::empty())?;
                return Ok(None);
            }
        }
        // New objects belong to the caller. We run as root, so chown only when the caller is
        // someone else (in a setgid directory the kernel already gave the directory's group).
        // The caller's ids are the mount's (shown) ids; the upper layer stores them translated.
        let (uid, gid) = (
            self.cfg.upper_disk_uid(c.uid),
            self.cfg.upper_disk_gid(c.gid),
        );
        let need_chown = uid != self.ids.0 || (pgid_setgid.is_none() && gid != self.ids.1);
        if need_chown {
            let gid = pgid_setgid.unwrap_or(gid);
            nix::unistd::fchownat(
                dir,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        let mode = match what {
            Make::File(m) | Make::Dir(m) | Make::Node(m, _) => Some(*m & mask),
            _ => None,
        };
        if let Some(mut m) = mode {
            if matches!(what, Make::Dir(_)) && pgid_setgid.is_some() {
                m |= libc::S_ISGID;
            }
            // chown dropped setuid/setgid, and our own process umask may have cut bits the
            // caller asked for: set the exact mode then.
            let special = m & (libc::S_ISUID | libc::S_ISGID | libc::S_ISVTX) != 0;
            if (need_chown && special) || m & self.proc_umask() != 0 {
                nix::sys::stat::fchmodat(
                    dir,
                    name,
                    Mode::from_bits_truncate(m),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )?;
            }
        }
        Ok(file)
    }

    fn set_opaque(&self, dir: BorrowedFd<'_>, name: &OsStr) -> OpResult<()> {
        match self.stack.whiteout {
            WhiteoutForm::Kernel => sys::set_xattr(
                dir,
                Some(name),
                OsStr::new("trusted.overlay.opaque"),
                b"y",
                0,
            )
            .map_err(io_errno),
            WhiteoutForm::Oci => {
                let sub = layers::open_subdir(dir, name)?;
                let f = nix::fcntl::openat(
                    &sub,
                    WH_OPAQUE,
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                drop(f);
                Ok(())
            }
        }
    }

    /// Write a whiteout for `name` into the upper directory `udir`.
    fn make_whiteout(&self, udir: BorrowedFd<'_>, name: &OsStr) -> OpResult<()> {
        match self.stack.whiteout {
            WhiteoutForm::Kernel => Ok(nix::sys::stat::mknodat(
                udir,
                name,
                SFlag::S_IFCHR,
                Mode::empty(),
                0,
            )?),
            WhiteoutForm::Oci => {
                let f = nix::fcntl::openat(
                    udir,
                    &*layers::wh_name(name),
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                drop(f);
                Ok(())
            }
        }
    }

    /// Create `name` in `parent` (copying the parent up, replacing a whiteout atomically) and
    /// return the new node with one lookup taken.
    pub fn create_entry(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
        what: Make,
        c: Caller,
    ) -> OpResult<(Arc<Node>, FileAttr)> {
        self.create_entry_fd(parent, name, what, c)
            .map(|(n, a, _)| (n, a))
    }

    /// [`Overlay::create_entry`], also returning the read-write fd of a new regular file.
    pub fn create_entry_fd(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
        what: Make,
        c: Caller,
    ) -> OpResult<(Arc<Node>, FileAttr, Option<OwnedFd>)> {
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        if layers::is_hidden_name(name) {
            // Such a name would be read back as a whiteout.
            return Err(Errno::EINVAL);
        }
        match self.lookup(parent, name, false) {
            Ok(_) => return Err(Errno::EEXIST),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let whited = matches!(what, Make::Dir(_)) && self.whited_out(parent, name)?;
        self.copy_up_dir(parent)?;
        let udir = parent.state.read().dir_fd(0).cloned().ok_or(Errno::EIO)?;
        let parent_merged = parent.state.read().dirs.len() > 1;
        let pst = nix::sys::stat::fstat(udir.as_ref())?;
        let setgid = if pst.st_mode & libc::S_ISGID != 0 {
            Some(pst.st_gid)
        } else {
            None
        };
        let is_dir = matches!(what, Make::Dir(_));
        // Make it in place; the lookup found nothing, so EEXIST means a whiteout is there (or a
        // racing create won, which the check below tells apart).
        let in_place = match self.make_at(udir.as_fd(), name, &what, c, setgid) {
            Ok(fd) => Ok(fd),
            Err(Errno::EEXIST) => match layers::lstat_at(udir.as_fd(), name) {
                Ok(st) if layers::is_chardev_whiteout(&st) => Err(()),
                _ => return Err(Errno::EEXIST),
            },
            Err(e) => return Err(e),
        };
        let file = if let Ok(fd) = in_place {
            // Only a directory that may hold OCI markers needs the `.wh.NAME` probe (we never
            // write them into upper in the kernel form, and a scan found none there).
            let oci_wh = self
                .upper_may_hold_oci(parent)
                .then(|| layers::wh_name(name))
                .filter(|wh| layers::lstat_at(udir.as_fd(), wh).is_ok());
            if let Some(wh) = oci_wh {
                if is_dir {
                    self.set_opaque(udir.as_fd(), name)?;
                }
                nix::unistd::unlinkat(udir.as_fd(), &*wh, UnlinkatFlags::NoRemoveDir)?;
            } else if is_dir && (whited || parent_merged || self.lower_positive(parent, name)?) {
                // Like the kernel: a new directory inside a merged directory is made opaque
                // (nothing below can show through it), as is one replacing a whiteout.
                self.set_opaque(udir.as_fd(), name)?;
            }
            fd
        } else {
            // Build in the staging dir, swap with the whiteout, drop the whiteout.
            let stage = self.stage()?;
            let tmp = self.stage_name();
            let fd = self.make_at(stage, &tmp, &what, c, setgid)?;
            if is_dir {
                if let Err(e) = self.set_opaque(stage, &tmp) {
                    let _ = remove_tree(stage, &tmp);
                    return Err(e);
                }
            }
            if let Err(e) =
                sys::renameat2(stage, &*tmp, udir.as_fd(), name, sys::RenameFlags::EXCHANGE)
            {
                let _ = remove_tree(stage, &tmp);
                return Err(e);
            }
            let _ = nix::unistd::unlinkat(stage, &*tmp, UnlinkatFlags::NoRemoveDir);
            fd
        };
        if matches!(what, Make::Link(..)) {
            return self.lookup(parent, name, true).map(|(n, a)| (n, a, None));
        }
        let (node, attr) = self.adopt_new(parent, &udir, name, file.as_ref())?;
        Ok((node, attr, file))
    }

    /// Whether the upper copy of directory `dir` may hold `.wh.*` names (see [`Overlay::probe_in`]).
    fn upper_may_hold_oci(&self, dir: &Node) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.stack.whiteout != WhiteoutForm::Kernel
            || dir.oci_checked.load(Relaxed) & 1 == 0
            || dir.oci_free.load(Relaxed) & 1 == 0
    }

    /// The node for an object we just made in the upper layer (nothing below can show through
    /// it: a new directory in a merged parent or over a whiteout is opaque).
    fn adopt_new(
        &self,
        parent: &Arc<Node>,
        udir: &Arc<OwnedFd>,
        name: &OsStr,
        file: Option<&OwnedFd>,
    ) -> OpResult<(Arc<Node>, FileAttr)> {
        let st = match file {
            Some(fd) => nix::sys::stat::fstat(fd)?,
            None => layers::lstat_at(udir.as_fd(), name)?,
        };
        let kind = crate::dirs::kind_of_mode(st.st_mode);
        let ino = self.table.origin(self.stack.encode_ino(0, st.st_ino));
        let dirs = if kind == FileType::Directory {
            vec![(0, Arc::new(layers::open_subdir(udir.as_fd(), name)?))]
        } else {
            Vec::new()
        };
        let pclone = parent.clone();
        let node = self.table.lookup_or_insert(
            ino,
            // The inode is brand new: a live node with its number is a stale one (the upper
            // filesystem reused the number of a removed object), never this object.
            |_| false,
            move |ino| {
                let node = Node::new(
                    ino,
                    kind,
                    crate::inodes::NodeState {
                        parent: Some(pclone),
                        name: name.to_owned(),
                        upper: true,
                        lower: None,
                        dirs,
                        unlinked: false,
                        lower_nlink: 1,
                        aliases: Vec::new(),
                        via: None,
                        lower_left: 0,
                    },
                );
                // We just made it: it carries no file capability until a setxattr gives it one.
                node.caps_unset
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                node
            },
            true,
        );
        let attr = self.attr_from(&node, &st);
        Ok((node, attr))
    }

    /// Remove `name` from `parent` (unlink or rmdir), writing a whiteout when a lower layer has it.
    pub fn remove_entry(&self, parent: &Arc<Node>, name: &OsStr, dir: bool) -> OpResult<()> {
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        let (node, attr) = self.lookup(parent, name, false)?;
        if dir && !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !dir && node.is_dir() {
            return Err(Errno::EISDIR);
        }
        if dir && !crate::dirs::is_empty(self, &node)? {
            return Err(Errno::ENOTEMPTY);
        }
        self.copy_up_dir(parent)?;
        let udir = parent.state.read().dir_fd(0).cloned().ok_or(Errno::EIO)?;
        let (in_upper, hard_lower) = {
            let s = node.state.read();
            (s.upper, !node.is_dir() && s.lower_nlink > 1)
        };
        // A hard-linked lower file may be in upper under another alias but not under this name.
        let in_upper = in_upper
            && (!hard_lower
                || matches!(
                    layers::probe(udir.as_fd(), name),
                    Ok(layers::Probe::Found(_))
                ));
        if hard_lower && !in_upper {
            let mut s = node.state.write();
            s.lower_left = s.lower_left.saturating_sub(1);
        }
        let need_wh = self.lower_positive(parent, name)?;
        if in_upper {
            if need_wh && self.stack.whiteout == WhiteoutForm::Kernel {
                let stage = self.stage()?;
                let tmp = self.stage_name();
                nix::sys::stat::mknodat(stage, &*tmp, SFlag::S_IFCHR, Mode::empty(), 0)?;
                if let Err(e) =
                    sys::renameat2(stage, &*tmp, udir.as_fd(), name, sys::RenameFlags::EXCHANGE)
                {
                    let _ = nix::unistd::unlinkat(stage, &*tmp, UnlinkatFlags::NoRemoveDir);
                    return Err(e);
                }
                crate::copyup::remove_staged(stage, &tmp, dir)?;
            } else {
                if need_wh {
                    self.make_whiteout(udir.as_fd(), name)?;
                }
                if dir {
                    remove_tree(udir.as_fd(), name)?;
                } else {
                    nix::unistd::unlinkat(udir.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
                }
            }
        } else {
            self.make_whiteout(udir.as_fd(), name)?;
            let mut s = node.state.write();
            if s.upper {
                // One lower name fewer (see the nlink rule in Overlay::attr_from).
                s.lower_nlink = s.lower_nlink.saturating_sub(1).max(1);
            }
        }
        if dir || attr.nlink <= 1 {
            node.state.write().unlinked = true;
        } else {
            self.drop_name(&node, parent, name);
        }
        Ok(())
    }

    /// rename(2) with RENAME_NOREPLACE / RENAME_EXCHANGE. Directories that exist in a lower layer
    /// give EXDEV (the kernel's default without redirect_dir).
    pub fn rename(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
        newparent: &Arc<Node>,
        newname: &OsStr,
        flags: u32,
    ) -> OpResult<()> {
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        if layers::is_hidden_name(newname) {
            return Err(Errno::EINVAL);
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 || (exchange && noreplace)
        {
            return Err(Errno::EINVAL);
        }
        let (src, _) = self.lookup(parent, name, false)?;
        let has_lower_dirs = |n: &Node| {
            n.is_dir()
                && n.state
                    .read()
                    .dirs
                    .iter()
                    .any(|(l, _)| !self.stack.is_upper(*l))
        };
        if has_lower_dirs(&src) {
            return Err(Errno::EXDEV);
        }
        let target = match self.lookup(newparent, newname, false) {
            Ok((t, a)) => Some((t, a)),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if let Some((t, _)) = &target {
            if Arc::ptr_eq(t, &src) {
                return Ok(());
            }
            if noreplace {
                return Err(Errno::EEXIST);
            }
            if exchange && has_lower_dirs(t) {
                return Err(Errno::EXDEV);
            }
            if !exchange {
                match (src.is_dir(), t.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if !crate::dirs::is_empty(self, t)? => {
                        self.mark_before_failed_move(&src, parent, name, newparent, t)?;
                        return Err(Errno::ENOTEMPTY);
                    }
                    _ => {}
                }
            }
        } else if exchange {
            return Err(Errno::ENOENT);
        }
        // A directory must not move into itself.
        if src.is_dir() {
            let mut p = Some(newparent.clone());
            while let Some(n) = p {
                if Arc::ptr_eq(&n, &src) {
                    return Err(Errno::EINVAL);
                }
                p = n.state.read().parent.clone();
            }
        }
        self.copy_up(&src, true)?;
        self.copy_up_dir(parent)?;
        self.copy_up_dir(newparent)?;
        let sdir = parent.state.read().dir_fd(0).cloned().ok_or(Errno::EIO)?;
        let ddir = newparent
            .state
            .read()
            .dir_fd(0)
            .cloned()
            .ok_or(Errno::EIO)?;
        if exchange {
            let (t, _) = target.as_ref().ok_or(Errno::ENOENT)?;
            self.copy_up(t, true)?;
            sys::renameat2(
                sdir.as_fd(),
                name,
                ddir.as_fd(),
                newname,
                sys::RenameFlags::EXCHANGE,
            )?;
            // A directory landing where a lower layer has the name must hide it.
            if t.is_dir() && Self::merged(parent) {
                self.set_opaque(sdir.as_fd(), name)?;
            }
            if src.is_dir() && Self::merged(newparent) {
                self.set_opaque(ddir.as_fd(), newname)?;
            }
            self.moved(&src, parent, name, newparent, newname);
            self.moved(t, newparent, newname, parent, name);
            return Ok(());
        }
        let need_wh = self.lower_positive(parent, name)?;
        // Clear what sits at the destination in the upper layer: a whiteout, or an upper
        // directory that is empty in the merged view (it may still hold whiteouts).
        match layers::lstat_at(ddir.as_fd(), newname) {
            Ok(st) if layers::is_chardev_whiteout(&st) && src.is_dir() => {
                nix::unistd::unlinkat(ddir.as_fd(), newname, UnlinkatFlags::NoRemoveDir)?;
            }
            Ok(st) if (st.st_mode & libc::S_IFMT) == libc::S_IFDIR => {
                let stage = self.stage()?;
                let tmp = self.stage_name();
                sys::renameat2(ddir.as_fd(), newname, stage, &*tmp, sys::RenameFlags::NONE)?;
                remove_tree(stage, &tmp)?;
            }
            _ => {}
        }
        if src.is_dir() && Self::merged(newparent) {
            self.set_opaque(sdir.as_fd(), name)?;
        }
        let rflags = if need_wh && self.stack.whiteout == WhiteoutForm::Kernel {
            sys::RenameFlags::WHITEOUT
        } else {
            sys::RenameFlags::NONE
        };
        sys::renameat2(sdir.as_fd(), name, ddir.as_fd(), newname, rflags)?;
        if need_wh && self.stack.whiteout == WhiteoutForm::Oci {
            self.make_whiteout(sdir.as_fd(), name)?;
        }
        // An OCI whiteout of the new name in the upper layer stays: it still hides the lower
        // layers, and does not hide the object of its own layer.
        if let Some((t, a)) = target {
            if t.is_dir() || a.nlink <= 1 {
                t.state.write().unlinked = true;
            } else {
                self.drop_name(&t, newparent, newname);
            }
        }
        self.moved(&src, parent, name, newparent, newname);
        Ok(())
    }

    /// The kernel checks a pure-upper target directory for emptiness only in the upper
    /// filesystem's own rename, after it has already made a moving directory opaque for its new
    /// merged parent; the marker stays although the rename fails with ENOTEMPTY. Do the same so
    /// the upper layers agree. (A target with lower layers is checked first, before any change.)
    fn mark_before_failed_move(
        &self,
        src: &Arc<Node>,
        parent: &Arc<Node>,
        name: &OsStr,
        newparent: &Arc<Node>,
        target: &Node,
    ) -> OpResult<()> {
        let pure_upper = |n: &Node| {
            n.state
                .read()
                .dirs
                .iter()
                .all(|(l, _)| self.stack.is_upper(*l))
        };
        if !src.is_dir() || !pure_upper(target) || !Self::merged(newparent) {
            return Ok(());
        }
        let sdir = parent.state.read().dir_fd(0).cloned();
        match sdir {
            Some(sdir) if pure_upper(src) => self.set_opaque(sdir.as_fd(), name),
            _ => Ok(()),
        }
    }

    /// Whether directory `d` merges several layers. A directory moved into such a parent is made
    /// opaque (kernel rule), so nothing below ever shows through it.
    fn merged(d: &Node) -> bool {
        d.state.read().dirs.len() > 1
    }

    /// The name oldparent/oldname of `node` is now newparent/newname.
    fn moved(
        &self,
        node: &Arc<Node>,
        oldparent: &Arc<Node>,
        oldname: &OsStr,
        newparent: &Arc<Node>,
        newname: &OsStr,
    ) {
        let mut s = node.state.write();
        s.aliases
            .retain(|(p, n)| !(Arc::ptr_eq(p, oldparent) && n == oldname));
        let was_primary =
            s.parent.as_ref().is_some_and(|p| Arc::ptr_eq(p, oldparent)) && s.name == oldname;
        if !was_primary && !node.is_dir() {
            if let Some(p) = s.parent.clone() {
                let n = s.name.clone();
                s.aliases.push((p, n));
            }
        }
        s.parent = Some(newparent.clone());
        s.name = newname.to_owned();
    }

    /// setattr: copy up, then apply mode, owner, size, times.
    #[allow(clippy::too_many_arguments)]
    pub fn setattr(
        &self,
        node: &Arc<Node>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<u64>,
    ) -> OpResult<FileAttr> {
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        self.copy_up(node, size != Some(0))?;
        let l = self.upper_loc(node)?;
        if uid.is_some() || gid.is_some() {
            nix::unistd::fchownat(
                l.dirfd(),
                &*l.name,
                uid.map(|u| Uid::from_raw(self.cfg.upper_disk_uid(u))),
                gid.map(|g| Gid::from_raw(self.cfg.upper_disk_gid(g))),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(m) = mode {
            if node.kind != FileType::Symlink {
                nix::sys::stat::fchmodat(
                    l.dirfd(),
                    &*l.name,
                    Mode::from_bits_truncate(m & 0o7777),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )?;
            }
        }
        if size.is_some() {
            node.data_changed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(sz) = size {
            if node.kind != FileType::RegularFile {
                return Err(if node.is_dir() {
                    Errno::EISDIR
                } else {
                    Errno::EINVAL
                });
            }
            let via_fh = fh.and_then(|f| self.file(f).ok()).and_then(|h| match &*h {
                crate::ovl::Handle::File(f) if f.upper => {
                    nix::unistd::ftruncate(&f.fd, sz as i64).ok()
                }
                _ => None,
            });
            if via_fh.is_none() {
                let fd = nix::fcntl::openat(
                    l.dirfd(),
                    &*l.name,
                    OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )?;
                nix::unistd::ftruncate(&fd, sz as i64)?;
            }
        }
        if atime.is_some() || mtime.is_some() {
            let a = atime.map(to_timespec).unwrap_or(TimeSpec::UTIME_OMIT);
            let m = mtime.map(to_timespec).unwrap_or(TimeSpec::UTIME_OMIT);
            nix::sys::stat::utimensat(
                l.dirfd(),
                &*l.name,
                &a,
                &m,
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
        self.attr(node)
    }

    /// setxattr (overlay-private names are refused).
    pub fn setxattr(
        &self,
        node: &Arc<Node>,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> OpResult<()> {
        if layers::is_reserved_view_xattr(name.as_encoded_bytes()) {
            return Err(Errno::EPERM);
        }
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        node.caps_unset
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.copy_up_for_xattr(node)?;
        let l = self.upper_loc(node)?;
        let n = if node.is_dir() {
            None
        } else {
            Some(l.name.as_os_str())
        };
        sys::set_xattr(l.dirfd(), n, &layers::escape_xattr(name), value, flags).map_err(io_errno)
    }

    /// removexattr.
    pub fn removexattr(&self, node: &Arc<Node>, name: &OsStr) -> OpResult<()> {
        if layers::is_reserved_view_xattr(name.as_encoded_bytes()) {
            return Err(Errno::ENODATA);
        }
        if !self.writable() {
            return Err(Errno::EROFS);
        }
        // Nothing to remove: fail before copying up.
        self.getxattr(node, name)?;
        self.copy_up_for_xattr(node)?;
        let l = self.upper_loc(node)?;
        let n = if node.is_dir() {
            None
        } else {
            Some(l.name.as_os_str())
        };
        sys::remove_xattr(l.dirfd(), n, &layers::escape_xattr(name)).map_err(io_errno)
    }

    /// Whether the upper directory of `parent` shows `name` as a whiteout (for tests/tools).
    pub fn upper_has_whiteout(&self, parent: &Node, name: &OsStr) -> bool {
        let Some(fd) = parent.state.read().dir_fd(0).cloned() else {
            return false;
        };
        matches!(layers::probe(fd.as_fd(), name), Ok(Probe::Whiteout))
    }
}
