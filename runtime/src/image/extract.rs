//! Safe extraction of one layer tar into an empty directory, converting OCI whiteouts to the kernel's form.
//!
//! Every entry is created relative to a parent directory fd opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so no entry can reach outside the destination — not through `..`, an absolute
//! path, or a symlink created by an earlier entry. Anything hostile or unsupported aborts the layer with an
//! error naming the entry; the caller owns the (staging) destination and removes it on error.
//!
//! Conversions (so the directory mounts as a lower layer with kernel overlayfs and strata-overlayfs):
//! `.wh.NAME` → char device 0/0 named NAME; `.wh..wh..opq` → xattr `trusted.overlay.opaque=y` on its dir.

use super::ImageError;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FchmodatFlags, UtimensatFlags};
use nix::sys::stat::{Mode, SFlag, fchmod, fchmodat, futimens, makedev, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat, linkat, symlinkat};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tar::EntryType;
use xattr::FileExt;

/// The OCI whiteout prefix and the opaque-directory marker.
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr kernel overlayfs reads to treat a directory as opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What an extraction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    pub entries: u64,
    pub file_bytes: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}

/// What a path already holds, to reject duplicates and check hard-link targets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    /// A directory created only because a later path needed it; an explicit entry may still describe it.
    ImplicitDir,
    Linkable,
    Whiteout,
    Marker,
}

/// Metadata common to all entries, read from the header and its PAX extensions.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Extracts the layer tar read from `reader` into `dest`, which must be an existing, empty directory.
/// `layer` names the layer in error messages.
pub fn extract_layer<R: Read>(
    reader: R,
    dest: &Path,
    layer: &str,
) -> Result<ExtractStats, ImageError> {
    let root = open_beneath_raw(None, dest, OFlag::O_PATH)
        .map_err(|e| ImageError::io(format!("open {}", dest.display()))(e.into()))?;
    let mut x = Extractor {
        root,
        layer: layer.to_string(),
        seen: HashMap::new(),
        dir_times: Vec::new(),
        stats: ExtractStats::default(),
    };
    // The layer root is a directory even if the tar never says so.
    x.seen.insert(PathBuf::new(), Kind::ImplicitDir);
    fchmod_path(&x.root, Path::new(""), 0o755).map_err(|e| x.err("", e))?;

    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| x.err("", format!("reading tar: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| x.err("", format!("corrupt or truncated tar: {e}")))?;
        x.entry(entry)?;
    }
    x.finish_dirs()?;
    Ok(x.stats)
}

struct Extractor {
    root: OwnedFd,
    layer: String,
    seen: HashMap<PathBuf, Kind>,
    dir_times: Vec<(PathBuf, TimeSpec)>,
    stats: ExtractStats,
}

impl Extractor {
    fn err(&self, entry: impl AsRef<Path>, reason: impl ToString) -> ImageError {
        ImageError::Entry {
            layer: self.layer.clone(),
            entry: entry.as_ref().display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = normalize(&raw).map_err(|r| self.err(&shown, r))?;
        let ty = entry.header().entry_type();
        if matches!(ty, EntryType::XGlobalHeader) {
            return Ok(());
        }
        // A hard link has no metadata of its own (it shares its target's inode); some writers leave the
        // numeric fields of its header empty, so they are not parsed.
        let meta = if ty == EntryType::Link {
            Meta {
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: TimeSpec::new(0, 0),
                xattrs: Vec::new(),
            }
        } else {
            self.meta(&mut entry).map_err(|r| self.err(&shown, r))?
        };
        self.stats.entries += 1;

        let Some(name) = path.file_name().map(OsStr::to_os_string) else {
            // The layer root itself.
            if !ty.is_dir() {
                return Err(self.err(&shown, "the layer root must be a directory"));
            }
            return self.directory(&path, &meta, &shown);
        };
        let parent_rel = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let name_str = name.to_string_lossy();

        // aufs bookkeeping (`.wh..wh.plnk/…`, `.wh..wh.aufs`) means nothing to overlayfs; Docker skips it too.
        if path.components().any(|c| {
            c.as_os_str().as_bytes().starts_with(b".wh..wh.") && c.as_os_str() != OPAQUE_MARKER
        }) {
            return Ok(());
        }
        if parent_rel.components().any(|c| {
            c.as_os_str()
                .as_bytes()
                .starts_with(WHITEOUT_PREFIX.as_bytes())
        }) {
            return Err(self.err(&shown, "a whiteout cannot be a directory"));
        }

        let parent = self.parent_dir(&parent_rel, &shown)?;
        if name_str == OPAQUE_MARKER {
            self.claim(&path, Kind::Marker, &shown)?;
            set_xattr_at(&parent, None, OPAQUE_XATTR, b"y")
                .map_err(|e| self.err(&shown, format!("set {OPAQUE_XATTR}: {e}")))?;
            self.stats.opaque_dirs += 1;
            return Ok(());
        }
        if let Some(target) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = OsStr::from_bytes(target);
            if target.is_empty() || target == "." || target == ".." {
                return Err(self.err(&shown, "malformed whiteout name"));
            }
            self.claim(&path, Kind::Marker, &shown)?;
            return self.whiteout(&parent, &parent_rel.join(target), target, &meta, &shown);
        }

        match ty {
            EntryType::Directory => self.directory(&path, &meta, &shown),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.claim(&path, Kind::Linkable, &shown)?;
                self.regular(&mut entry, &parent, &name, &meta, &shown)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| self.err(&shown, "symlink without a target"))?
                    .into_owned();
                self.claim(&path, Kind::Linkable, &shown)?;
                symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                    .map_err(|e| self.err(&shown, format!("symlink: {e}")))?;
                self.finish_node(&parent, &name, &meta, false, &shown)
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.err(&shown, "hard link without a target"))?
                    .into_owned();
                self.hard_link(&raw_target, &path, &parent, &name, &shown)
            }
            EntryType::Fifo => {
                self.claim(&path, Kind::Linkable, &shown)?;
                mknodat(
                    &parent,
                    name.as_os_str(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(|e| self.err(&shown, format!("mkfifo: {e}")))?;
                self.finish_node(&parent, &name, &meta, true, &shown)
            }
            EntryType::Char => {
                let major = entry
                    .header()
                    .device_major()
                    .ok()
                    .flatten()
                    .unwrap_or(u32::MAX);
                let minor = entry
                    .header()
                    .device_minor()
                    .ok()
                    .flatten()
                    .unwrap_or(u32::MAX);
                if (major, minor) != (0, 0) {
                    return Err(self.err(
                        &shown,
                        format!("device node c {major}:{minor} not allowed in an image"),
                    ));
                }
                // Already in the kernel's whiteout form.
                self.whiteout(&parent, &path, &name, &meta, &shown)
            }
            EntryType::Block => Err(self.err(&shown, "block device not allowed in an image")),
            other => Err(self.err(&shown, format!("unsupported tar entry type {other:?}"))),
        }
    }

    /// Records that `path` is now taken; any second entry for it is rejected.
    fn claim(&mut self, path: &Path, kind: Kind, shown: &str) -> Result<(), ImageError> {
        match self.seen.get(path) {
            None => {
                self.seen.insert(path.to_path_buf(), kind);
                Ok(())
            }
            Some(Kind::ImplicitDir) if kind == Kind::Dir => {
                self.seen.insert(path.to_path_buf(), kind);
                Ok(())
            }
            Some(_) => Err(self.err(shown, "duplicate entry")),
        }
    }

    /// Opens `rel` (a directory below the root), creating missing directories on the way. Refuses to pass
    /// through symlinks or non-directories.
    fn parent_dir(&mut self, rel: &Path, shown: &str) -> Result<OwnedFd, ImageError> {
        match open_beneath(&self.root, rel, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.parent_error(e, shown)),
        }
        let mut dir = self.root.try_clone().map_err(|e| self.err(shown, e))?;
        let mut sofar = PathBuf::new();
        for comp in rel.components() {
            sofar.push(comp);
            match open_beneath(&dir, comp.as_os_str(), OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(fd) => dir = fd,
                Err(Errno::ENOENT) => {
                    nix::sys::stat::mkdirat(
                        &dir,
                        comp.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|e| self.err(shown, format!("mkdir {}: {e}", sofar.display())))?;
                    fchmodat(
                        &dir,
                        comp.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                        FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| self.err(shown, e))?;
                    self.seen.entry(sofar.clone()).or_insert(Kind::ImplicitDir);
                    dir = open_beneath(&dir, comp.as_os_str(), OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| self.parent_error(e, shown))?;
                }
                Err(e) => return Err(self.parent_error(e, shown)),
            }
        }
        Ok(dir)
    }

    fn parent_error(&self, e: Errno, shown: &str) -> ImageError {
        match e {
            Errno::ELOOP => self.err(shown, "a parent path component is a symlink"),
            Errno::EXDEV => self.err(shown, "path escapes the layer"),
            Errno::ENOTDIR => self.err(shown, "a parent path component is not a directory"),
            e => self.err(shown, format!("open parent: {e}")),
        }
    }

    fn directory(&mut self, path: &Path, meta: &Meta, shown: &str) -> Result<(), ImageError> {
        self.claim(path, Kind::Dir, shown)?;
        if let Some(name) = path.file_name() {
            let parent = self.parent_dir(path.parent().unwrap_or(Path::new("")), shown)?;
            match nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(self.err(shown, format!("mkdir: {e}"))),
            }
        }
        let dir = open_beneath(&self.root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| self.parent_error(e, shown))?;
        let dir = File::from(dir);
        fchownat(
            &dir,
            "",
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| self.err(shown, format!("chown: {e}")))?;
        fchmod(&dir, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| self.err(shown, format!("chmod: {e}")))?;
        for (k, v) in &meta.xattrs {
            dir.set_xattr(k, v)
                .map_err(|e| self.err(shown, format!("set xattr {}: {e}", k.to_string_lossy())))?;
        }
        // Creating entries inside changes a directory's mtime, so directory times are set at the very end.
        self.dir_times.push((path.to_path_buf(), meta.mtime));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        let fd = nix::fcntl::openat(
            parent,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.err(shown, format!("create: {e}")))?;
        let mut file = File::from(fd);
        let expected = entry.header().entry_size().unwrap_or(0);
        let written = io::copy(entry, &mut file)
            .map_err(|e| self.err(shown, format!("reading data: {e}")))?;
        if entry.header().entry_type() != EntryType::GNUSparse && written < expected {
            return Err(self.err(
                shown,
                format!("truncated tar: {written} of {expected} bytes"),
            ));
        }
        self.stats.file_bytes += written;
        // chown clears setuid/setgid and file capabilities, so: owner, then mode, then xattrs.
        fchownat(
            &file,
            "",
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| self.err(shown, format!("chown: {e}")))?;
        fchmod(&file, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| self.err(shown, format!("chmod: {e}")))?;
        for (k, v) in &meta.xattrs {
            file.set_xattr(k, v)
                .map_err(|e| self.err(shown, format!("set xattr {}: {e}", k.to_string_lossy())))?;
        }
        futimens(&file, &meta.mtime, &meta.mtime)
            .map_err(|e| self.err(shown, format!("set times: {e}")))?;
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times of a node created by name in `parent`.
    fn finish_node(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        chmod: bool,
        shown: &str,
    ) -> Result<(), ImageError> {
        fchownat(
            parent,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(shown, format!("chown: {e}")))?;
        if chmod {
            fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| self.err(shown, format!("chmod: {e}")))?;
        }
        for (k, v) in &meta.xattrs {
            let key = k.to_string_lossy();
            match set_xattr_at(parent, Some(name), &key, v) {
                Ok(()) => {}
                // Linux refuses user.* xattrs on symlinks, so they cannot exist on any layer; Docker
                // drops them the same way.
                Err(e)
                    if !chmod
                        && key.starts_with("user.")
                        && e.raw_os_error() == Some(libc::EPERM) =>
                {
                    tracing::warn!(layer = %self.layer, entry = shown, xattr = %key, "dropped: symlinks cannot carry user.* xattrs");
                }
                Err(e) => return Err(self.err(shown, format!("set xattr {key}: {e}"))),
            }
        }
        utimensat(
            parent,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.err(shown, format!("set times: {e}")))?;
        Ok(())
    }

    fn whiteout(
        &mut self,
        parent: &OwnedFd,
        target_path: &Path,
        target: &OsStr,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), ImageError> {
        self.claim(target_path, Kind::Whiteout, shown)?;
        mknodat(parent, target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| self.err(shown, format!("create whiteout: {e}")))?;
        utimensat(
            parent,
            target,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.err(shown, format!("set times: {e}")))?;
        self.stats.whiteouts += 1;
        Ok(())
    }

    fn hard_link(
        &mut self,
        raw_target: &[u8],
        path: &Path,
        parent: &OwnedFd,
        name: &OsStr,
        shown: &str,
    ) -> Result<(), ImageError> {
        let target = normalize(raw_target).map_err(|r| {
            self.err(
                shown,
                format!(
                    "hard link target {:?}: {r}",
                    String::from_utf8_lossy(raw_target)
                ),
            )
        })?;
        match self.seen.get(&target) {
            Some(Kind::Linkable) => {}
            Some(Kind::Dir | Kind::ImplicitDir) => {
                return Err(self.err(
                    shown,
                    format!("hard link to directory {}", target.display()),
                ));
            }
            _ => {
                return Err(self.err(
                    shown,
                    format!(
                        "hard link to {:?}, which is not an earlier entry of this layer",
                        target.display().to_string()
                    ),
                ));
            }
        }
        self.claim(path, Kind::Linkable, shown)?;
        let target_parent = self.parent_dir(target.parent().unwrap_or(Path::new("")), shown)?;
        let target_name = target
            .file_name()
            .ok_or_else(|| self.err(shown, "hard link to the root"))?;
        linkat(&target_parent, target_name, parent, name, AtFlags::empty())
            .map_err(|e| self.err(shown, format!("link: {e}")))?;
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777,
            uid: u32::try_from(h.uid().map_err(|e| format!("bad uid: {e}"))?)
                .map_err(|_| "uid out of range")?,
            gid: u32::try_from(h.gid().map_err(|e| format!("bad gid: {e}"))?)
                .map_err(|_| "gid out of range")?,
            mtime: TimeSpec::new(h.mtime().map_err(|e| format!("bad mtime: {e}"))? as i64, 0),
            xattrs: Vec::new(),
        };
        let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| format!("bad PAX header: {e}"))?
        else {
            return Ok(meta);
        };
        for ext in pax {
            let ext = ext.map_err(|e| format!("bad PAX header: {e}"))?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let name = OsStr::from_bytes(name);
                let s = name.to_string_lossy();
                if s.starts_with("trusted.overlay.") && s != OPAQUE_XATTR {
                    return Err(format!(
                        "overlayfs-internal xattr {s} not allowed in an image"
                    ));
                }
                meta.xattrs
                    .push((name.to_os_string(), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                meta.mtime = parse_pax_time(ext.value_bytes()).ok_or("bad PAX mtime")?;
            } else if key == b"uid" || key == b"gid" {
                let v = std::str::from_utf8(ext.value_bytes())
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or("bad PAX uid/gid")?;
                if key == b"uid" {
                    meta.uid = v;
                } else {
                    meta.gid = v;
                }
            }
        }
        Ok(meta)
    }

    /// Sets directory times deepest first, now that nothing will be created inside them any more.
    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        self.dir_times
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, t) in std::mem::take(&mut self.dir_times) {
            let dir = open_beneath(&self.root, &path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| self.err(&path, format!("reopen directory: {e}")))?;
            futimens(&dir, &t, &t).map_err(|e| self.err(&path, format!("set times: {e}")))?;
        }
        Ok(())
    }
}

/// Turns a tar path into a relative path of normal components. `./` prefixes, `.` components, doubled and
/// trailing slashes are harmless and dropped; `..` and absolute paths are refused.
pub fn normalize(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut out = PathBuf::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path contains \"..\"".into()),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += i64::from(c.to_digit(10)?) * 10i64.pow(8 - i as u32);
    }
    if secs < 0 && nanos > 0 {
        // "-1.5" means 1.5 s before the epoch.
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}

/// `openat2(dir, rel, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`; `rel` empty opens `dir` itself.
fn open_beneath(dir: &OwnedFd, rel: impl AsRef<Path>, flags: OFlag) -> Result<OwnedFd, Errno> {
    open_beneath_raw(Some(dir), rel.as_ref(), flags)
}

fn open_beneath_raw(dir: Option<&OwnedFd>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        // No O_NOFOLLOW: with O_PATH it would open a final symlink itself; RESOLVE_NO_SYMLINKS already
        // refuses symlinks in every component (ELOOP), the last one included.
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(if dir.is_some() {
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS
        } else {
            ResolveFlag::empty()
        });
    match dir {
        Some(d) => openat2(d, rel, how),
        None => openat2(nix::fcntl::AT_FDCWD, rel, how),
    }
}

fn fchmod_path(dir: &OwnedFd, rel: &Path, mode: u32) -> Result<(), String> {
    let fd =
        open_beneath(dir, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| e.to_string())?;
    fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|e| e.to_string())
}

/// Sets an xattr on `name` in `parent` (or on `parent` itself) without following a final symlink. Goes
/// through /proc/self/fd so that only the already-verified parent fd is trusted, not a path.
fn set_xattr_at(parent: &OwnedFd, name: Option<&OsStr>, key: &str, value: &[u8]) -> io::Result<()> {
    // An O_PATH fd does not take fsetxattr, and lsetxattr on the bare magic link would address the link;
    // "/proc/self/fd/N/." and "/proc/self/fd/N/NAME" address the directory or the entry in it.
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", parent.as_fd().as_raw_fd()));
    p.push(name.unwrap_or(OsStr::new(".")));
    xattr::set(&p, key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dots_and_refuses_escapes() {
        assert_eq!(
            normalize(b"./etc//passwd").unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(normalize(b"etc/").unwrap(), PathBuf::from("etc"));
        assert_eq!(normalize(b"./").unwrap(), PathBuf::new());
        assert!(normalize(b"/etc/passwd").is_err());
        assert!(normalize(b"a/../../b").is_err());
        assert!(normalize(b"..").is_err());
    }

    #[test]
    fn pax_times_keep_nanoseconds() {
        let t = parse_pax_time(b"1700000000.25").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1_700_000_000, 250_000_000));
        let t = parse_pax_time(b"42").unwrap();
        assert_eq!((t.tv_sec(), t.tv_nsec()), (42, 0));
        assert!(parse_pax_time(b"x").is_none());
    }
}
