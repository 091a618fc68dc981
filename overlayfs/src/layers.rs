//! The layer stack: opening the layer roots, probing one name in one layer (whiteouts in both forms)
//! and detecting opaque directories (all three forms).
//!
//! Every access below a layer root goes through a directory fd that was itself reached one
//! component at a time with O_NOFOLLOW, so a symlink inside a layer is never followed by us.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::options::{Config, WhiteoutForm};
use crate::sys;

/// Prefix of OCI whiteout names.
pub const WH_PREFIX: &[u8] = b".wh.";
/// The OCI opaque marker inside a directory.
pub const WH_OPAQUE: &str = ".wh..wh..opq";
/// Kernel opaque xattrs.
pub const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// A layer that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The directory does not exist or cannot be opened.
    #[error("{role} '{path}' cannot be opened: {err}")]
    Open {
        /// lowerdir / upperdir / workdir
        role: &'static str,
        /// the path as given
        path: PathBuf,
        /// why
        err: Errno,
    },
    /// workdir and upperdir are on different filesystems.
    #[error("workdir '{0}' is not on the same filesystem as upperdir '{1}'")]
    WorkOtherFs(PathBuf, PathBuf),
    /// No lower layer.
    #[error("no lower layer given")]
    NoLower,
}

/// One layer directory.
#[derive(Debug)]
pub struct Layer {
    /// O_PATH fd of the layer root.
    pub root: Arc<OwnedFd>,
    /// Index of this layer's filesystem among the distinct filesystems of the stack (for st_ino).
    pub fs_index: u64,
    /// Path as configured (for messages).
    pub path: PathBuf,
}

/// All layers of a mount: index 0 is the upper layer when there is one, then the lowers top-first.
#[derive(Debug)]
pub struct LayerStack {
    /// The layers.
    pub layers: Vec<Layer>,
    /// Whether `layers[0]` is the writable upper layer.
    pub has_upper: bool,
    /// O_PATH fd of the work directory (staging area for copy-up), when writable.
    pub work: Option<OwnedFd>,
    /// The whiteout form written on removal.
    pub whiteout: WhiteoutForm,
    /// Whether one filesystem holds all layers (then st_ino is the real inode number).
    pub single_fs: bool,
}

/// What one layer has under one name.
#[derive(Debug)]
pub enum Probe {
    /// Nothing.
    Missing,
    /// A whiteout (char 0/0 or `.wh.NAME`): lower layers are hidden.
    Whiteout,
    /// An object.
    Found(FileStat),
}

fn open_dir_path(role: &'static str, path: &Path) -> Result<OwnedFd, LayerError> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| LayerError::Open {
        role,
        path: path.to_owned(),
        err,
    })?;
    // O_PATH opens even unreadable dirs; make sure we can list it.
    nix::fcntl::openat(
        &fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| LayerError::Open {
        role,
        path: path.to_owned(),
        err,
    })?;
    Ok(fd)
}

impl LayerStack {
    /// Open every layer named by `config`.
    pub fn open(config: &Config) -> Result<LayerStack, LayerError> {
        if config.lowers.is_empty() {
            return Err(LayerError::NoLower);
        }
        let mut fds = Vec::new();
        let has_upper = config.upper.is_some() && !config.read_only;
        let mut work = None;
        if has_upper {
            if let (Some(u), Some(w)) = (&config.upper, &config.work) {
                let ufd = open_dir_path("upperdir", u)?;
                let wfd = open_dir_path("workdir", w)?;
                let ud = nix::sys::stat::fstat(&ufd).map_err(|err| LayerError::Open {
                    role: "upperdir",
                    path: u.clone(),
                    err,
                })?;
                let wd = nix::sys::stat::fstat(&wfd).map_err(|err| LayerError::Open {
                    role: "workdir",
                    path: w.clone(),
                    err,
                })?;
                if ud.st_dev != wd.st_dev {
                    return Err(LayerError::WorkOtherFs(w.clone(), u.clone()));
                }
                fds.push((ufd, u.clone(), ud.st_dev));
                work = Some(wfd);
            }
        }
        for l in &config.lowers {
            let fd = open_dir_path("lowerdir", l)?;
            let st = nix::sys::stat::fstat(&fd).map_err(|err| LayerError::Open {
                role: "lowerdir",
                path: l.clone(),
                err,
            })?;
            fds.push((fd, l.clone(), st.st_dev));
        }
        let mut devs: Vec<u64> = Vec::new();
        let mut layers = Vec::new();
        for (fd, path, dev) in fds {
            let fs_index = match devs.iter().position(|d| *d == dev) {
                Some(i) => i,
                None => {
                    devs.push(dev);
                    devs.len() - 1
                }
            } as u64;
            layers.push(Layer {
                root: Arc::new(fd),
                fs_index,
                path,
            });
        }
        Ok(LayerStack {
            single_fs: devs.len() == 1,
            layers,
            has_upper,
            work,
            whiteout: config.whiteout,
        })
    }

    /// The st_ino this mount reports for inode `ino` of layer `layer`: the real number when one
    /// filesystem holds every layer, else the filesystem's index in the top bits (like xino).
    pub fn encode_ino(&self, layer: usize, ino: u64) -> u64 {
        let v = if self.single_fs {
            ino
        } else {
            let fsi = self.layers.get(layer).map(|l| l.fs_index).unwrap_or(0);
            (ino & ((1 << 56) - 1)) | (fsi << 56)
        };
        // nodeid 1 is the root of the mount; another object never gets it.
        if v <= 1 { v | (1 << 63) } else { v }
    }

    /// Whether `layer` is the upper layer.
    pub fn is_upper(&self, layer: usize) -> bool {
        self.has_upper && layer == 0
    }
}

/// Names never shown in the merged view.
pub fn is_hidden_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

/// `.wh.NAME`.
pub fn wh_name(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    std::os::unix::ffi::OsStringExt::from_vec(v)
}

/// Whether a stat is a kernel-form whiteout (char device 0/0).
pub fn is_chardev_whiteout(st: &FileStat) -> bool {
    (st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR.bits() && st.st_rdev == 0
}

/// fstatat without following a symlink.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<FileStat> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// What `dir` (one layer's copy of a directory) holds under `name`.
pub fn probe(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Probe> {
    probe_with(dir, name, true)
}

/// Whether directory `dir` holds any `.wh.*` name (OCI whiteouts or opaque marker).
pub fn has_oci_markers(dir: &impl AsFd) -> nix::Result<bool> {
    let fd = open_for_listing(dir)?;
    let mut found = false;
    sys::for_each_dirent(fd.as_fd(), |e| {
        found = e.name.as_bytes().starts_with(WH_PREFIX);
        Ok::<_, Errno>(!found)
    })?;
    Ok(found)
}

/// Like [`probe`]; `check_oci` = false skips looking for `.wh.NAME` (known absent).
pub fn probe_with(dir: BorrowedFd<'_>, name: &OsStr, check_oci: bool) -> nix::Result<Probe> {
    match lstat_at(dir, name) {
        Ok(st) if is_chardev_whiteout(&st) => Ok(Probe::Whiteout),
        Ok(st) => Ok(Probe::Found(st)),
        Err(Errno::ENOENT) if !check_oci => Ok(Probe::Missing),
        // A 252+ byte name cannot have an OCI whiteout (it would exceed NAME_MAX).
        Err(Errno::ENOENT) if name.len() + WH_PREFIX.len() > 255 => Ok(Probe::Missing),
        Err(Errno::ENOENT) => match lstat_at(dir, &wh_name(name)) {
            Ok(_) => Ok(Probe::Whiteout),
            Err(Errno::ENOENT) => Ok(Probe::Missing),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Open the directory `name` of `dir` as an O_PATH fd, never following a symlink.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Whether the directory `dir` is opaque (hides the layers below it) in any of the three forms.
pub fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    for x in OPAQUE_XATTRS {
        if let Ok(v) = sys::get_xattr(dir, None, OsStr::new(x)) {
            if v.as_slice() == b"y" {
                return true;
            }
        }
    }
    lstat_at(dir, OsStr::new(WH_OPAQUE)).is_ok()
}

const TRUSTED_OVL: &[u8] = b"trusted.overlay.";
const ESCAPED_OVL: &[u8] = b"trusted.overlay.overlay.";

/// Whether a real (layer) xattr name is overlay bookkeeping the merged view must hide. Escaped
/// names (`trusted.overlay.overlay.*`, as the kernel stores a user's `trusted.overlay.*`) are not.
pub fn is_private_xattr(name: &[u8]) -> bool {
    (name.starts_with(TRUSTED_OVL) && !name.starts_with(ESCAPED_OVL))
        || name.starts_with(b"user.overlay.")
}

/// The layer name under which a merged-view xattr is stored: `trusted.overlay.X` is escaped to
/// `trusted.overlay.overlay.X` like the kernel does, so overlays can nest.
pub fn escape_xattr(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let b = name.as_bytes();
    if let Some(rest) = b.strip_prefix(TRUSTED_OVL) {
        let mut v = ESCAPED_OVL.to_vec();
        v.extend_from_slice(rest);
        std::os::unix::ffi::OsStringExt::from_vec(v)
    } else {
        name.to_owned()
    }
}

/// The merged-view name of a layer xattr (None when it is hidden bookkeeping).
pub fn unescape_xattr(name: &[u8]) -> Option<Vec<u8>> {
    if let Some(rest) = name.strip_prefix(ESCAPED_OVL) {
        let mut v = TRUSTED_OVL.to_vec();
        v.extend_from_slice(rest);
        Some(v)
    } else if is_private_xattr(name) {
        None
    } else {
        Some(name.to_vec())
    }
}

/// Whether a merged-view xattr name may not be set or read through the mount.
pub fn is_reserved_view_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.overlay.")
}

/// Open a directory fd for reading its entries.
pub fn open_for_listing(dir: &impl AsFd) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}
