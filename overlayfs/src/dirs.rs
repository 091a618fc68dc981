//! Merged directory listing: every visible name once, whiteouts and `.wh.*` names hidden, taken as
//! a snapshot at opendir so offsets (index + 1) stay stable for the life of the open directory.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use fuser::FileType;
use nix::errno::Errno;

use crate::inodes::Node;
use crate::layers::{self, WH_OPAQUE, WH_PREFIX};
use crate::ovl::Overlay;

/// One name of a merged directory.
#[derive(Debug, Clone)]
pub struct DirEntryRec {
    /// The name.
    pub name: OsString,
    /// d_type.
    pub kind: FileType,
    /// d_ino, equal to the st_ino a lookup reports.
    pub ino: u64,
    /// The topmost layer holding the name (no layer above has it, nor a whiteout for it).
    pub layer: usize,
}

/// The kind a d_type names (None: DT_UNKNOWN, or a type this crate does not know).
fn kind_of(t: u8) -> Option<FileType> {
    Some(match t {
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_DIR => FileType::Directory,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_REG => FileType::RegularFile,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_SOCK => FileType::Socket,
        _ => return None,
    })
}

/// The kind of a stat result.
pub fn kind_of_mode(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// The visible names of directory `node`, without "." and "..".
pub fn merged_names(ovl: &Overlay, node: &Node) -> Result<Vec<DirEntryRec>, Errno> {
    let dirs = node.state.read().dirs.clone();
    let mut seen: HashSet<OsString> = HashSet::new();
    let mut out = Vec::new();
    for (layer, fd) in dirs.iter() {
        let mut hidden_below: Vec<OsString> = Vec::new();
        let mut oci_markers = false;
        let lfd = layers::open_for_listing(fd.as_ref())?;
        crate::sys::for_each_dirent(lfd.as_fd(), |ent| {
            let name = ent.name;
            let bytes = name.as_bytes();
            if bytes == b"." || bytes == b".." {
                return Ok(true);
            }
            if let Some(rest) = bytes.strip_prefix(WH_PREFIX) {
                oci_markers = true;
                if name != OsStr::new(WH_OPAQUE) {
                    hidden_below.push(OsStr::from_bytes(rest).to_owned());
                }
                return Ok(true);
            }
            if seen.contains(name) {
                return Ok(true);
            }
            let mut kind = kind_of(ent.kind);
            let mut ino = ent.ino;
            if kind.is_none() || kind == Some(FileType::CharDevice) {
                let st = layers::lstat_at(fd.as_fd(), name)?;
                if layers::is_chardev_whiteout(&st) {
                    hidden_below.push(name.to_owned());
                    return Ok(true);
                }
                kind = Some(kind_of_mode(st.st_mode));
                ino = st.st_ino;
            }
            seen.insert(name.to_owned());
            let mut st_ino = ovl.stack.encode_ino(*layer, ino);
            if ovl.stack.is_upper(*layer) {
                st_ino = ovl.table.origin(st_ino);
            }
            out.push(DirEntryRec {
                name: name.to_owned(),
                kind: kind.unwrap_or(FileType::RegularFile),
                ino: st_ino,
                layer: *layer,
            });
            Ok::<_, Errno>(true)
        })?;
        seen.extend(hidden_below);
        // The listing tells, for free, whether lookups here must probe `.wh.NAME`.
        if *layer < 64 && !ovl.stack.is_upper(*layer) {
            let bit = 1u64 << *layer;
            if !oci_markers {
                node.oci_free
                    .fetch_or(bit, std::sync::atomic::Ordering::Relaxed);
            }
            node.oci_checked
                .fetch_or(bit, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(out)
}

/// Whether directory `node` has no visible entry.
pub fn is_empty(ovl: &Overlay, node: &Node) -> Result<bool, Errno> {
    Ok(merged_names(ovl, node)?.is_empty())
}
