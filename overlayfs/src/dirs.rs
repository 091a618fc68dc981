//! Merged directory listing: every visible name once, whiteouts and `.wh.*` names hidden, taken as
//! a snapshot at opendir so offsets (index + 1) stay stable for the life of the open directory.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use fuser::FileType;
use nix::dir::{Dir, Type};
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
}

fn kind_of(t: Option<Type>) -> Option<FileType> {
    Some(match t? {
        Type::Fifo => FileType::NamedPipe,
        Type::CharacterDevice => FileType::CharDevice,
        Type::Directory => FileType::Directory,
        Type::BlockDevice => FileType::BlockDevice,
        Type::File => FileType::RegularFile,
        Type::Symlink => FileType::Symlink,
        Type::Socket => FileType::Socket,
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
        let lfd = layers::open_for_listing(fd.as_ref())?;
        let mut dir = Dir::from_fd(lfd)?;
        for ent in dir.iter() {
            let ent = ent?;
            let name = OsStr::from_bytes(ent.file_name().to_bytes());
            let bytes = name.as_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            if let Some(rest) = bytes.strip_prefix(WH_PREFIX) {
                if name != OsStr::new(WH_OPAQUE) {
                    hidden_below.push(OsStr::from_bytes(rest).to_owned());
                }
                continue;
            }
            if seen.contains(name) {
                continue;
            }
            let mut kind = kind_of(ent.file_type());
            let mut ino = ent.ino();
            if kind.is_none() || kind == Some(FileType::CharDevice) {
                let st = layers::lstat_at(fd.as_fd(), name)?;
                if layers::is_chardev_whiteout(&st) {
                    hidden_below.push(name.to_owned());
                    continue;
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
            });
        }
        seen.extend(hidden_below);
    }
    Ok(out)
}

/// Whether directory `node` has no visible entry.
pub fn is_empty(ovl: &Overlay, node: &Node) -> Result<bool, Errno> {
    Ok(merged_names(ovl, node)?.is_empty())
}
