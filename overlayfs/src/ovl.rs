//! The merged view: lookup across layers, attributes, open files and directories, reads, xattrs,
//! statfs. Changes live in `write.rs`, copy-up in `copyup.rs`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{BackingId, FileAttr, FileType, INodeNo};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use parking_lot::{Mutex, RwLock};

use crate::dirs::{self, DirEntryRec, kind_of_mode};
use crate::inodes::{InodeTable, Loc, Node, NodeState, ROOT_INO};
use crate::layers::{self, LayerStack, Probe};
use crate::options::Config;
use crate::sys;

/// Result of an operation: an errno for the kernel on failure.
pub type OpResult<T> = Result<T, Errno>;

/// Map an io::Error to an errno.
pub fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// An open regular file.
#[derive(Debug)]
pub struct FileHandle {
    /// The node.
    pub node: Arc<Node>,
    /// Our own fd of the real file (reads/writes when passthrough is not used).
    pub fd: OwnedFd,
    /// Whether `fd` is the upper copy.
    pub upper: bool,
    /// Passthrough backing id shared by every handle of this inode.
    pub backing: Option<Arc<BackingId>>,
}

/// An open directory: the snapshot of its entries.
#[derive(Debug)]
pub struct DirHandle {
    /// The node.
    pub node: Arc<Node>,
    /// ".", ".." and the merged names.
    /// Built at the first readdir (a cached listing needs no rebuild on every opendir) and
    /// kept for the life of the handle, so offsets stay stable.
    pub entries: std::sync::OnceLock<Vec<DirEntryRec>>,
}

impl DirHandle {
    /// The snapshot, building it on first use.
    pub fn entries(&self, ovl: &Overlay) -> OpResult<&[DirEntryRec]> {
        if let Some(e) = self.entries.get() {
            return Ok(e);
        }
        let built = ovl.list_dir(&self.node)?;
        Ok(self.entries.get_or_init(|| built))
    }
}

/// Something an fh refers to.
#[derive(Debug)]
pub enum Handle {
    /// A file.
    File(FileHandle),
    /// A directory.
    Dir(DirHandle),
}

const HSHARDS: usize = 16;
/// Lookups probed in a directory before its layer copies are scanned for `.wh.*` names (see
/// [`Overlay::probe_in`]).
const SCAN_AFTER_PROBES: u32 = 8;

/// The state of one mount.
#[derive(Debug)]
pub struct Overlay {
    /// The layers.
    pub stack: LayerStack,
    /// Live nodes.
    pub table: InodeTable,
    /// The options.
    pub cfg: Config,
    handles: Vec<RwLock<HashMap<u64, Arc<Handle>>>>,
    next_fh: AtomicU64,
    /// Passthrough is negotiated with the kernel.
    pub passthrough: AtomicBool,
    /// One backing file per inode: ino -> (backing, backed by the upper copy).
    pub backings: Mutex<HashMap<u64, (std::sync::Weak<BackingId>, bool)>>,
    /// Counter for staging names in the work directory.
    pub stage_counter: AtomicU64,
    /// Our staging directory inside workdir, once it exists (see [`Overlay::stage`]).
    pub stage_dir: std::sync::OnceLock<OwnedFd>,
    /// Our euid and egid (owners of what we create).
    pub ids: (u32, u32),
    /// This process's umask (applied by the kernel to what we create), read at first need: it
    /// costs a /proc read that a read-only mount never needs.
    proc_umask: std::sync::OnceLock<u32>,
}

/// The process umask, read without changing it.
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o777)
}

impl Overlay {
    /// This process's umask (we never change it, so reading it once is enough).
    pub fn proc_umask(&self) -> u32 {
        *self.proc_umask.get_or_init(process_umask)
    }

    /// Build the overlay over opened layers (inserts the root node).
    pub fn new(cfg: Config, stack: LayerStack, stage_dir: Option<OwnedFd>) -> OpResult<Overlay> {
        let table = InodeTable::new();
        let mut dirs = Vec::new();
        // The root merges every layer (opaque marks on layer roots are ignored, as by the kernel).
        for (i, l) in stack.layers.iter().enumerate() {
            dirs.push((i, l.root.clone()));
        }
        let upper = stack.has_upper;
        table.insert_root(Node::new(
            ROOT_INO,
            FileType::Directory,
            NodeState {
                parent: None,
                name: OsString::new(),
                upper,
                lower: if upper && stack.layers.len() > 1 {
                    Some(1)
                } else if upper {
                    None
                } else {
                    Some(0)
                },
                dirs,
                unlinked: false,
                lower_nlink: 1,
                aliases: Vec::new(),
                via: None,
                lower_left: 0,
            },
        ));
        Ok(Overlay {
            stack,
            table,
            cfg,
            handles: (0..HSHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_fh: AtomicU64::new(1),
            passthrough: AtomicBool::new(false),
            backings: Mutex::new(HashMap::new()),
            stage_counter: AtomicU64::new(0),
            stage_dir: stage_dir.map(std::sync::OnceLock::from).unwrap_or_default(),
            ids: (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
            proc_umask: std::sync::OnceLock::new(),
        })
    }

    /// Whether changes are allowed.
    pub fn writable(&self) -> bool {
        self.stack.has_upper && self.stack.work.is_some()
    }

    /// The node `ino` or ESTALE.
    pub fn node(&self, ino: INodeNo) -> OpResult<Arc<Node>> {
        self.table.get(ino.0).ok_or(Errno::ESTALE)
    }

    // ---- handles ----

    /// Store a handle, returning its fh.
    pub fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles[(fh as usize) % HSHARDS]
            .write()
            .insert(fh, Arc::new(h));
        fh
    }

    /// The handle `fh`.
    pub fn handle(&self, fh: u64) -> OpResult<Arc<Handle>> {
        self.handles[(fh as usize) % HSHARDS]
            .read()
            .get(&fh)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    /// Forget handle `fh`.
    pub fn remove_handle(&self, fh: u64) -> Option<Arc<Handle>> {
        self.handles[(fh as usize) % HSHARDS].write().remove(&fh)
    }

    /// The file handle `fh`.
    pub fn file(&self, fh: u64) -> OpResult<Arc<Handle>> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::File(_) => Ok(h),
            Handle::Dir(_) => Err(Errno::EISDIR),
        }
    }

    // ---- locations ----

    /// Where the visible copy of a non-directory lives (layer, parent dir fd, name).
    pub fn loc(&self, node: &Node) -> OpResult<Loc> {
        let (parent, name, layer) = {
            let st = node.state.read();
            if st.unlinked {
                return Err(Errno::ENOENT);
            }
            (st.parent.clone(), st.name.clone(), st.top_layer())
        };
        let parent = parent.ok_or(Errno::EINVAL)?;
        let layer = layer.ok_or(Errno::EIO)?;
        let dir = parent
            .state
            .read()
            .dir_fd(layer)
            .cloned()
            .ok_or(Errno::EIO)?;
        Ok(Loc { layer, dir, name })
    }

    /// The upper location of a node that has been copied up.
    pub fn upper_loc(&self, node: &Node) -> OpResult<Loc> {
        if node.is_dir() {
            let fd = node.state.read().dir_fd(0).cloned().ok_or(Errno::EIO)?;
            return Ok(Loc {
                layer: 0,
                dir: fd,
                name: OsString::from("."),
            });
        }
        let l = self.loc(node)?;
        if l.layer != 0 || !self.stack.has_upper {
            return Err(Errno::EIO);
        }
        Ok(l)
    }

    /// The visible copy as (dir fd, name) usable for *at calls: for a directory its own fd and ".".
    pub fn any_loc(&self, node: &Node) -> OpResult<Loc> {
        if node.is_dir() {
            let (layer, fd) = node.state.read().top_dir().cloned().ok_or(Errno::EIO)?;
            return Ok(Loc {
                layer,
                dir: fd,
                name: OsString::from("."),
            });
        }
        self.loc(node)
    }

    /// stat of the visible copy.
    pub fn stat(&self, node: &Node) -> OpResult<FileStat> {
        if node.is_dir() {
            let fd = node
                .state
                .read()
                .top_dir()
                .map(|d| d.1.clone())
                .ok_or(Errno::EIO)?;
            return nix::sys::stat::fstat(fd.as_ref());
        }
        let l = self.loc(node)?;
        layers::lstat_at(l.dirfd(), &l.name)
    }

    /// The attributes the mount reports for `node` from the real `st`.
    pub fn attr_from(&self, node: &Node, st: &FileStat) -> FileAttr {
        let ts = |s: i64, ns: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::new(s as u64, ns as u32)
            } else {
                UNIX_EPOCH - Duration::from_secs((-s) as u64) + Duration::from_nanos(ns as u64)
            }
        };
        let (nlink, kind, in_upper) = {
            let s = node.state.read();
            let nlink = if node.is_dir() {
                if s.dirs.len() > 1 {
                    1
                } else {
                    st.st_nlink as u32
                }
            } else if s.lower.is_some() && s.lower_nlink > 1 {
                // Hard links of a lower file stay one inode across copy-up (index=on semantics):
                // the names in upper plus the lower names still showing.
                let upper = if s.upper { st.st_nlink } else { 0 };
                (upper + s.lower_left) as u32
            } else {
                st.st_nlink as u32
            };
            (nlink, node.kind, s.upper)
        };
        FileAttr {
            ino: INodeNo(node.ino),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: ts(st.st_atime, st.st_atime_nsec),
            mtime: ts(st.st_mtime, st.st_mtime_nsec),
            ctime: ts(st.st_ctime, st.st_ctime_nsec),
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm: (st.st_mode & 0o7777) as u16,
            nlink,
            uid: self.cfg.shown_uid(st.st_uid, in_upper),
            gid: self.cfg.shown_gid(st.st_gid, in_upper),
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
            flags: 0,
        }
    }

    /// An all-zero attribute record (for negative entries).
    pub fn blank_attr(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo(0),
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Attributes of `node` now.
    pub fn attr(&self, node: &Node) -> OpResult<FileAttr> {
        let st = self.stat(node)?;
        Ok(self.attr_from(node, &st))
    }

    /// Attribute cache time for `node`: long for objects only in (immutable) lower layers. Every
    /// change to a hard-linked lower file goes through its one kernel inode, which the kernel
    /// updates or invalidates itself, so its attributes may be cached like any other's.
    pub fn attr_ttl(&self, node: &Node) -> Duration {
        if node.state.read().upper {
            self.cfg.upper_ttl
        } else {
            self.cfg.lower_ttl
        }
    }

    /// Entry (name) cache time for `node`: as [`Overlay::attr_ttl`], except for hard-linked lower
    /// files.
    pub fn ttl(&self, node: &Node) -> Duration {
        let s = node.state.read();
        if !node.is_dir() && s.lower_nlink > 1 {
            // Every path walk to a hard-linked lower file must reach us as a lookup: that is the
            // only way to learn which alias a later open or setattr (they carry no name) is for.
            Duration::ZERO
        } else if s.upper {
            self.cfg.upper_ttl
        } else {
            self.cfg.lower_ttl
        }
    }

    // ---- lookup ----

    /// Find `name` in directory `parent` across the layers. Takes a kernel lookup on the node
    /// when `count` is set.
    pub fn lookup(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
        count: bool,
    ) -> OpResult<(Arc<Node>, FileAttr)> {
        self.lookup_from(parent, name, count, None)
    }

    /// lookup, starting at layer `start` when a listing of a lower-only (so immutable) parent
    /// showed that no layer above has the name: saves the probes of those layers.
    pub fn lookup_from(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
        count: bool,
        start: Option<usize>,
    ) -> OpResult<(Arc<Node>, FileAttr)> {
        if !parent.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        if layers::is_hidden_name(name) || name == "." || name == ".." || name.is_empty() {
            return Err(Errno::ENOENT);
        }
        let (pdirs, parent_upper) = {
            let p = parent.state.read();
            (p.dirs.clone(), p.upper)
        };
        let skip = match start {
            Some(l) if !parent_upper => pdirs.iter().position(|(pl, _)| *pl == l).unwrap_or(0),
            _ => 0,
        };
        let mut found: Option<(usize, FileStat)> = None;
        let mut subdirs: Vec<(usize, Arc<OwnedFd>)> = Vec::new();
        let mut lower: Option<(usize, u64)> = None;
        for (layer, fd) in pdirs.iter().skip(skip) {
            match self.probe_in(parent, *layer, fd, name)? {
                Probe::Missing => continue,
                Probe::Whiteout => break,
                Probe::Found(st) => {
                    let is_dir = kind_of_mode(st.st_mode) == FileType::Directory;
                    if found.is_none() {
                        found = Some((*layer, st));
                        if !self.stack.is_upper(*layer) {
                            lower = Some((*layer, st.st_nlink));
                        }
                        if !is_dir {
                            // A non-directory hides everything below; but remember the lower copy
                            // under an upper one (its origin) for hard-link counts.
                            break;
                        }
                    } else {
                        if !is_dir {
                            break;
                        }
                        // Whether the copy above is opaque matters only now that a layer below
                        // has the directory too (most directories live in one layer).
                        if subdirs
                            .last()
                            .is_some_and(|(_, d)| layers::is_opaque(d.as_fd()))
                        {
                            break;
                        }
                        if lower.is_none() {
                            lower = Some((*layer, st.st_nlink));
                        }
                    }
                    subdirs.push((*layer, Arc::new(layers::open_subdir(fd.as_fd(), name)?)));
                }
            }
        }
        let (top, st) = found.ok_or(Errno::ENOENT)?;
        let kind = kind_of_mode(st.st_mode);
        let mut ino = self.stack.encode_ino(top, st.st_ino);
        let upper = self.stack.is_upper(top);
        if upper {
            ino = self.table.origin(ino);
        }
        let pclone = parent.clone();
        let name_owned = name.to_owned();
        let node = self.table.lookup_or_insert(
            ino,
            |n| {
                if n.kind != kind {
                    return false;
                }
                let s = n.state.read();
                if s.unlinked {
                    return false;
                }
                // An object with a single name must be known under this very name (renames
                // update it); otherwise the node is stale and its number was reused.
                kind == FileType::Directory
                    || st.st_nlink > 1
                    || s.lower.is_some()
                    || (s.parent.as_ref().is_some_and(|p| Arc::ptr_eq(p, parent)) && s.name == name)
            },
            move |ino| {
                Node::new(
                    ino,
                    kind,
                    NodeState {
                        parent: Some(pclone),
                        name: name_owned,
                        upper,
                        lower: lower.map(|l| l.0),
                        dirs: subdirs,
                        unlinked: false,
                        lower_nlink: lower.map(|l| l.1).unwrap_or(1),
                        aliases: Vec::new(),
                        via: None,
                        lower_left: match lower {
                            Some((_, n)) if upper => n.saturating_sub(1),
                            Some((_, n)) => n,
                            None => 0,
                        },
                    },
                )
            },
            count,
        );
        if !node.is_dir() && node.state.read().upper == upper {
            self.note_alias(&node, parent, name);
        }
        if !node.is_dir() && node.state.read().lower_nlink > 1 {
            node.state.write().via = Some((parent.clone(), name.to_owned()));
        }
        // A live node may already be copied up (a hard-link alias found in a lower layer): its
        // attributes come from where the node lives now.
        let attr = if node.state.read().upper != upper {
            self.attr(&node)?
        } else {
            self.attr_from(&node, &st)
        };
        Ok((node, attr))
    }

    fn is_name(s: &NodeState, parent: &Arc<Node>, name: &OsStr) -> bool {
        s.parent.as_ref().is_some_and(|p| Arc::ptr_eq(p, parent)) && s.name == name
    }

    /// Remember that `node` is also reachable as parent/name.
    pub fn note_alias(&self, node: &Arc<Node>, parent: &Arc<Node>, name: &OsStr) {
        {
            let s = node.state.read();
            if Self::is_name(&s, parent, name)
                || s.aliases
                    .iter()
                    .any(|(p, n)| Arc::ptr_eq(p, parent) && n == name)
                || s.aliases.len() >= 16
            {
                return;
            }
        }
        node.state
            .write()
            .aliases
            .push((parent.clone(), name.to_owned()));
    }

    /// parent/name no longer names `node`: switch to another known name, or mark it unlinked.
    pub fn drop_name(&self, node: &Arc<Node>, parent: &Arc<Node>, name: &OsStr) {
        let (primary, aliases) = {
            let s = node.state.read();
            (Self::is_name(&s, parent, name), s.aliases.clone())
        };
        let alive: Vec<(Arc<Node>, OsString)> = aliases
            .into_iter()
            .filter(|(p, n)| !(Arc::ptr_eq(p, parent) && n == name))
            .filter(|(p, n)| {
                let fd = p.state.read().dir_fd(0).cloned();
                fd.is_some_and(|fd| matches!(layers::probe(fd.as_fd(), n), Ok(Probe::Found(_))))
            })
            .collect();
        let mut s = node.state.write();
        if primary {
            match alive.first() {
                Some((p, n)) => {
                    s.parent = Some(p.clone());
                    s.name = n.clone();
                    s.aliases = alive[1..].to_vec();
                }
                // A hard-linked lower file not yet copied up still shows under its other lower
                // names; its lower copy stays readable where it was.
                None if !s.upper && s.lower_nlink > 1 && s.lower_left > 0 => {}
                None => s.unlinked = true,
            }
        } else {
            s.aliases = alive;
        }
    }

    /// Whether some lower layer of `parent` shows an object under `name` (so removing or moving
    /// the upper one needs a whiteout or an opaque directory).
    pub fn lower_positive(&self, parent: &Node, name: &OsStr) -> OpResult<bool> {
        let dirs = parent.state.read().dirs.clone();
        for (layer, fd) in dirs.iter() {
            if self.stack.is_upper(*layer) {
                continue;
            }
            match self.probe_in(parent, *layer, fd, name)? {
                Probe::Missing => continue,
                Probe::Whiteout => return Ok(false),
                Probe::Found(_) => return Ok(true),
            }
        }
        Ok(false)
    }

    /// probe() of `name` in `dir`'s copy in `layer`, skipping the `.wh.NAME` check where the
    /// layer's copy is known to hold no OCI markers. Lower copies never change; the upper copy
    /// is only trusted when we write kernel-form whiteouts ourselves.
    pub fn probe_in(
        &self,
        dir: &Node,
        layer: usize,
        fd: &OwnedFd,
        name: &OsStr,
    ) -> nix::Result<Probe> {
        let cacheable = layer < 64
            && (!self.stack.is_upper(layer)
                || self.stack.whiteout == crate::options::WhiteoutForm::Kernel);
        let mut check = true;
        if cacheable {
            let bit = 1u64 << layer;
            // A scan (open, getdents64 until the end, close) costs about as much as a few
            // `.wh.NAME` probes: only scan once lookups here repay it. The first lookups after a
            // mount (a path walk: one name per directory) then take one probe each.
            if dir.oci_checked.load(Ordering::Relaxed) & bit == 0
                && dir.probes.fetch_add(1, Ordering::Relaxed) >= SCAN_AFTER_PROBES
            {
                if let Ok(has) = layers::has_oci_markers(fd) {
                    if !has {
                        dir.oci_free.fetch_or(bit, Ordering::Relaxed);
                    }
                    dir.oci_checked.fetch_or(bit, Ordering::Relaxed);
                }
            }
            check = dir.oci_free.load(Ordering::Relaxed) & bit == 0;
        }
        layers::probe_with(fd.as_fd(), name, check)
    }

    /// Whether the lookup of `name` in `parent` stops at a whiteout in some layer (a directory
    /// made there must be opaque, as the kernel does).
    pub fn whited_out(&self, parent: &Node, name: &OsStr) -> OpResult<bool> {
        let dirs = parent.state.read().dirs.clone();
        for (layer, fd) in dirs.iter() {
            match self.probe_in(parent, *layer, fd, name)? {
                Probe::Missing => continue,
                Probe::Whiteout => return Ok(true),
                Probe::Found(_) => return Ok(false),
            }
        }
        Ok(false)
    }

    // ---- reading ----

    /// readlink.
    pub fn readlink(&self, node: &Node) -> OpResult<OsString> {
        let l = self.loc(node)?;
        nix::fcntl::readlinkat(l.dirfd(), &*l.name)
    }

    /// Open the visible copy of a regular file with `flags` (access mode and status flags).
    pub fn open_real(&self, loc: &Loc, flags: i32) -> OpResult<OwnedFd> {
        let keep = libc::O_ACCMODE
            | libc::O_APPEND
            | libc::O_DIRECT
            | libc::O_SYNC
            | libc::O_DSYNC
            | libc::O_NOATIME
            | libc::O_TRUNC;
        let f = OFlag::from_bits_truncate(flags & keep)
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK;
        let fd = nix::fcntl::openat(loc.dirfd(), &*loc.name, f, Mode::empty())?;
        // O_NONBLOCK only guards against opening a FIFO by mistake; drop it for regular I/O.
        let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let fl = OFlag::from_bits_truncate(fl) & !OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(fl))?;
        Ok(fd)
    }

    /// ".", ".." and the merged names of directory `node`.
    pub fn list_dir(&self, node: &Arc<Node>) -> OpResult<Vec<DirEntryRec>> {
        let parent_ino = node
            .state
            .read()
            .parent
            .as_ref()
            .map(|p| p.ino)
            .unwrap_or(ROOT_INO);
        let mut entries = vec![
            DirEntryRec {
                name: ".".into(),
                kind: FileType::Directory,
                ino: node.ino,
                layer: 0,
            },
            DirEntryRec {
                name: "..".into(),
                kind: FileType::Directory,
                ino: parent_ino,
                layer: 0,
            },
        ];
        entries.extend(dirs::merged_names(self, node)?);
        Ok(entries)
    }

    /// Open directory `node` (its listing is taken at the first readdir).
    pub fn open_dir(&self, node: &Arc<Node>) -> OpResult<u64> {
        Ok(self.add_handle(Handle::Dir(DirHandle {
            node: node.clone(),
            entries: std::sync::OnceLock::new(),
        })))
    }

    // ---- xattrs ----

    /// getxattr on the visible copy (overlay-private names do not exist in the merged view).
    pub fn getxattr(&self, node: &Node, name: &OsStr) -> OpResult<Vec<u8>> {
        if layers::is_reserved_view_xattr(name.as_encoded_bytes())
            || (name == "security.capability"
                && node.caps_unset.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(Errno::ENODATA);
        }
        let l = self.any_loc(node)?;
        let n = if node.is_dir() {
            None
        } else {
            Some(l.name.as_os_str())
        };
        sys::get_xattr(l.dirfd(), n, &layers::escape_xattr(name)).map_err(io_errno)
    }

    /// listxattr of the visible copy without overlay-private names.
    pub fn listxattr(&self, node: &Node) -> OpResult<Vec<u8>> {
        let l = self.any_loc(node)?;
        let n = if node.is_dir() {
            None
        } else {
            Some(l.name.as_os_str())
        };
        let raw = sys::list_xattr(l.dirfd(), n).map_err(io_errno)?;
        let mut out = Vec::with_capacity(raw.len());
        for item in raw.split(|b| *b == 0).filter(|s| !s.is_empty()) {
            if let Some(shown) = layers::unescape_xattr(item) {
                out.extend_from_slice(&shown);
                out.push(0);
            }
        }
        Ok(out)
    }

    /// statfs of the upper layer (or the top lower layer).
    pub fn statfs(&self) -> OpResult<nix::sys::statvfs::Statvfs> {
        let root = self.stack.layers.first().ok_or(Errno::EIO)?;
        nix::sys::statvfs::fstatvfs(root.root.as_ref())
    }
}
