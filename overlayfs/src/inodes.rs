//! The inode table: one node per merged object, numbered by its st_ino (the FUSE nodeid is the
//! st_ino), lookup counts, forget. Sharded so that no global lock sits on the read path.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fuser::FileType;
use parking_lot::{Mutex, RwLock};

/// The nodeid of the mount's root.
pub const ROOT_INO: u64 = 1;
const SHARDS: usize = 64;

/// Where a merged object lives, guarded by the node's lock.
#[derive(Debug)]
pub struct NodeState {
    /// The parent directory (None for the root). Keeps the parent alive while the child is.
    pub parent: Option<Arc<Node>>,
    /// The object's name in `parent` (for hard links: the first name it was found under).
    pub name: OsString,
    /// The object exists in the upper layer at parent/name.
    pub upper: bool,
    /// The layer of the lower copy that is (or was, before copy-up) visible.
    pub lower: Option<usize>,
    /// Directories: the fd of each layer's copy that takes part in the merge, top first.
    pub dirs: Vec<(usize, Arc<OwnedFd>)>,
    /// The last name was removed (the node lives on for open files only).
    pub unlinked: bool,
    /// nlink of the lower copy (to report hard-link counts after copy-up, as index=on does).
    pub lower_nlink: u64,
    /// Other names (hard links) this object was found under, so it stays reachable when its
    /// first name goes away.
    pub aliases: Vec<(Arc<Node>, OsString)>,
    /// Hard-linked lower files: the name this node was last looked up under. FUSE opens and
    /// setattrs carry no name, so a copy-up goes through this one, as the kernel copies up (or
    /// links up, with index=on) the alias it was asked through.
    pub via: Option<(Arc<Node>, OsString)>,
    /// Hard-linked lower files: how many of the lower names are still visible and not yet in the
    /// upper layer (copied or linked up, or whited out). nlink is the upper count plus these.
    pub lower_left: u64,
}

impl NodeState {
    /// The fd of this directory's copy in `layer`.
    pub fn dir_fd(&self, layer: usize) -> Option<&Arc<OwnedFd>> {
        self.dirs
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, fd)| fd)
    }

    /// The topmost copy of this directory.
    pub fn top_dir(&self) -> Option<&(usize, Arc<OwnedFd>)> {
        self.dirs.first()
    }

    /// The layer that currently holds the visible copy of the object.
    pub fn top_layer(&self) -> Option<usize> {
        if self.upper { Some(0) } else { self.lower }
    }
}

/// One merged object.
#[derive(Debug)]
pub struct Node {
    /// st_ino == FUSE nodeid.
    pub ino: u64,
    /// File type (never changes for a node).
    pub kind: FileType,
    /// Outstanding kernel lookups.
    pub lookups: AtomicU64,
    /// Location.
    pub state: RwLock<NodeState>,
    /// Serialises copy-up of this node.
    pub copyup_lock: Mutex<()>,
    /// Directories: bit L set = this directory's copy in layer L was scanned...
    pub oci_checked: AtomicU64,
    /// ...and holds no `.wh.*` name, so lookups skip the OCI whiteout probe there.
    pub oci_free: AtomicU64,
    /// Directories: lookups probed here so far (a layer's copy is scanned once there were enough).
    pub probes: std::sync::atomic::AtomicU32,
    /// The file's data may have changed since it was copied up (a writing open or a truncate), so
    /// its lower copy no longer has the same data.
    pub data_changed: AtomicBool,
    /// Known to carry no `security.capability`: this server made the object and no xattr was set
    /// on it since. The kernel asks for that xattr before the first write to every inode (to
    /// drop file capabilities); this answers without a syscall.
    pub caps_unset: AtomicBool,
}

impl Node {
    /// A new node with zero lookups.
    pub fn new(ino: u64, kind: FileType, state: NodeState) -> Node {
        Node {
            ino,
            kind,
            lookups: AtomicU64::new(0),
            state: RwLock::new(state),
            copyup_lock: Mutex::new(()),
            oci_checked: AtomicU64::new(0),
            oci_free: AtomicU64::new(0),
            probes: std::sync::atomic::AtomicU32::new(0),
            data_changed: AtomicBool::new(false),
            caps_unset: AtomicBool::new(false),
        }
    }

    /// Whether this node is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
}

/// A directory fd plus the name of an object in it: how every non-directory is reached.
#[derive(Debug, Clone)]
pub struct Loc {
    /// The layer.
    pub layer: usize,
    /// The parent directory's copy in that layer.
    pub dir: Arc<OwnedFd>,
    /// The object's name.
    pub name: OsString,
}

impl Loc {
    /// The directory fd.
    pub fn dirfd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// All live nodes.
#[derive(Debug)]
pub struct InodeTable {
    shards: Vec<RwLock<HashMap<u64, Arc<Node>>>>,
    /// st_ino kept by objects copied up during this mount: upper's encoded ino -> st_ino.
    origins: RwLock<HashMap<u64, u64>>,
    synthetic: AtomicU64,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    /// An empty table.
    pub fn new() -> InodeTable {
        InodeTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            origins: RwLock::new(HashMap::new()),
            synthetic: AtomicU64::new(1),
        }
    }

    fn shard(&self, ino: u64) -> &RwLock<HashMap<u64, Arc<Node>>> {
        let h = ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.shards[(h as usize) % SHARDS]
    }

    /// The node with this nodeid.
    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.shard(ino).read().get(&ino).cloned()
    }

    /// Insert the root (never forgotten).
    pub fn insert_root(&self, node: Node) -> Arc<Node> {
        let n = Arc::new(node);
        n.lookups.store(1 << 40, Ordering::Relaxed);
        self.shard(n.ino).write().insert(n.ino, n.clone());
        n
    }

    /// Take one kernel lookup of the node `ino`, creating it with `make` when it is not live.
    /// `accept` decides whether an existing node really is this object (else a fresh number is
    /// used: the upper filesystem may reuse the inode number of a removed, still-open file).
    pub fn lookup_or_insert(
        &self,
        ino: u64,
        accept: impl Fn(&Node) -> bool,
        make: impl FnOnce(u64) -> Node,
        count: bool,
    ) -> Arc<Node> {
        {
            let mut shard = self.shard(ino).write();
            match shard.get(&ino) {
                Some(n) if accept(n) => {
                    if count {
                        n.lookups.fetch_add(1, Ordering::Relaxed);
                    }
                    return n.clone();
                }
                Some(_) => {}
                None => {
                    let n = Arc::new(make(ino));
                    if count {
                        n.lookups.store(1, Ordering::Relaxed);
                    }
                    shard.insert(ino, n.clone());
                    return n;
                }
            }
        }
        let fresh = self.fresh_ino();
        self.set_origin(ino, fresh);
        let n = Arc::new(make(fresh));
        if count {
            n.lookups.store(1, Ordering::Relaxed);
        }
        self.shard(fresh).write().insert(fresh, n.clone());
        n
    }

    /// Register a node created by us (mkdir/create/...) with one lookup.
    pub fn insert_new(&self, node: Node) -> Arc<Node> {
        let n = Arc::new(node);
        n.lookups.store(1, Ordering::Relaxed);
        self.shard(n.ino).write().insert(n.ino, n.clone());
        n
    }

    /// A number no real object gets (bit 62 set).
    pub fn fresh_ino(&self) -> u64 {
        (1 << 62) | self.synthetic.fetch_add(1, Ordering::Relaxed)
    }

    /// Drop `n` kernel lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut shard = self.shard(ino).write();
        if let Some(node) = shard.get(&ino) {
            let prev = node.lookups.fetch_sub(
                n.min(node.lookups.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            if prev <= n {
                shard.remove(&ino);
            }
        }
    }

    /// The st_ino an upper object with encoded number `upper_ino` reports (its copy-up origin's).
    pub fn origin(&self, upper_ino: u64) -> u64 {
        self.origins
            .read()
            .get(&upper_ino)
            .copied()
            .unwrap_or(upper_ino)
    }

    /// Remember that the upper object `upper_ino` keeps st_ino `ino`.
    pub fn set_origin(&self, upper_ino: u64, ino: u64) {
        if upper_ino != ino {
            self.origins.write().insert(upper_ino, ino);
        }
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no node is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
