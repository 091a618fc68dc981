//! Every `unsafe` call of this crate, each behind a safe function.
//!
//! Extended attributes are reached through `/proc/self/fd/<dirfd>/<name>` with the `l*xattr` calls:
//! the directory fd is ours and `name` is a single component, so the final object is never followed
//! and no path can leave the layer (the same guarantee as RESOLVE_BENEATH for a one-component walk).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// Build the `/proc/self/fd/N/name` path that names `name` inside the directory `dir`
/// (or the directory itself when `name` is None).
fn proc_path(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    match name {
        Some(n) => {
            p.push(b'/');
            p.extend_from_slice(n.as_bytes());
        }
        None => p.extend_from_slice(b"/."),
    }
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// Read the value of xattr `attr` of `name` in `dir` (not following a symlink).
pub fn get_xattr(dir: BorrowedFd<'_>, name: Option<&OsStr>, attr: &OsStr) -> io::Result<Vec<u8>> {
    let path = proc_path(dir, name)?;
    let attr = cstr(attr)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: path and attr are NUL-terminated; buf is valid for buf.len() bytes.
        let rc = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                attr.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        match check(rc) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < (1 << 20) => {
                let n = buf.len() * 4;
                buf.resize(n, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// List the xattr names of `name` in `dir`, as the raw NUL-separated buffer.
pub fn list_xattr(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> io::Result<Vec<u8>> {
    let path = proc_path(dir, name)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: path is NUL-terminated; buf is valid for buf.len() bytes.
        let rc = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match check(rc) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < (1 << 22) => {
                let n = buf.len() * 4;
                buf.resize(n, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Set xattr `attr` of `name` in `dir` to `value` (flags: XATTR_CREATE / XATTR_REPLACE).
pub fn set_xattr(
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    attr: &OsStr,
    value: &[u8],
    flags: i32,
) -> io::Result<()> {
    let path = proc_path(dir, name)?;
    let attr = cstr(attr)?;
    // SAFETY: pointers are valid for the given lengths and NUL-terminated where required.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            attr.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(rc as isize).map(drop)
}

/// Remove xattr `attr` of `name` in `dir`.
pub fn remove_xattr(dir: BorrowedFd<'_>, name: Option<&OsStr>, attr: &OsStr) -> io::Result<()> {
    let path = proc_path(dir, name)?;
    let attr = cstr(attr)?;
    // SAFETY: both strings are NUL-terminated.
    let rc = unsafe { libc::lremovexattr(path.as_ptr(), attr.as_ptr()) };
    check(rc as isize).map(drop)
}

/// Outcome of [`fork`] in the calling process.
pub enum Forked {
    /// We are the child.
    Child,
    /// We are the parent; the child's pid.
    Parent(i32),
}

/// fork(2). Only call while the process has a single thread (before any server thread starts).
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the binary calls this before it starts any thread, so the child inherits a
    // consistent address space; it only uses async-signal-safe work until it continues normally.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child.as_raw())),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// The flags of [`renameat2`] (the kernel's `RENAME_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenameFlags(libc::c_uint);

impl RenameFlags {
    pub const NONE: RenameFlags = RenameFlags(0);
    pub const NOREPLACE: RenameFlags = RenameFlags(libc::RENAME_NOREPLACE);
    pub const EXCHANGE: RenameFlags = RenameFlags(libc::RENAME_EXCHANGE);
    pub const WHITEOUT: RenameFlags = RenameFlags(libc::RENAME_WHITEOUT);
    /// From raw `RENAME_*` bits (the kernel rejects unknown ones with EINVAL).
    pub const fn from_raw(bits: libc::c_uint) -> RenameFlags {
        RenameFlags(bits)
    }
}

/// renameat2(2) as a raw syscall: nix offers it only on glibc, and the binaries are also built for musl
/// (whose start-up does not query the CPU; see scripts/setup).
pub fn renameat2<P1, P2>(
    old_dir: impl AsFd,
    old: &P1,
    new_dir: impl AsFd,
    new: &P2,
    flags: RenameFlags,
) -> nix::Result<()>
where
    P1: ?Sized + nix::NixPath,
    P2: ?Sized + nix::NixPath,
{
    let rc = old.with_nix_path(|o| {
        new.with_nix_path(|n| {
            // SAFETY: both paths are NUL-terminated C strings that live across the call; the fds are
            // borrowed, so they stay open.
            unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    old_dir.as_fd().as_raw_fd(),
                    o.as_ptr(),
                    new_dir.as_fd().as_raw_fd(),
                    n.as_ptr(),
                    flags.0,
                )
            }
        })
    })??;
    nix::errno::Errno::result(rc).map(drop)
}

/// The global allocator of the musl builds (scripts/setup; the binaries' main.rs name it): dlmalloc for
/// small blocks, and blocks of [`DIRECT_MAP`] bytes or more mapped straight from the kernel, as glibc does
/// above its mmap threshold. dlmalloc alone carves big blocks out of its heap and clears them for a
/// zeroed request: fuser's 16 MiB request buffer per worker thread was then written in full, 4,096 page
/// faults each (~10 ms of every mount here, and 16 MiB resident per worker). Fresh anonymous pages are
/// already zero and cost nothing until touched.
pub struct Allocator;

/// Blocks of this size or more are mapped directly.
pub const DIRECT_MAP: usize = 256 * 1024;

/// dlmalloc's heap behind std's futex mutex. dlmalloc's own `global` lock is a libc pthread mutex: on
/// musl every alloc and free then made two calls into libc, about half of the time `strata run` spent
/// parsing its arguments. std's lock is an inlined compare-and-swap when uncontended.
static SMALL: std::sync::Mutex<Heap> = std::sync::Mutex::new(Heap(dlmalloc::Dlmalloc::new()));

struct Heap(dlmalloc::Dlmalloc);

// SAFETY: the heap's raw pointers refer to memory it owns, reached only through the mutex.
unsafe impl Send for Heap {}

/// The heap, locked. No allocator code panics while holding it, so a poisoned lock still guards a
/// consistent heap.
fn small() -> std::sync::MutexGuard<'static, Heap> {
    SMALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn direct(layout: std::alloc::Layout) -> bool {
    layout.size() >= DIRECT_MAP && layout.align() <= 4096
}

fn map_block(size: usize) -> *mut u8 {
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: small blocks are dlmalloc's (behind SMALL's lock); a direct block is a whole
// mapping of `layout.size()` bytes, and the layout given back at dealloc/realloc is the one it was
// allocated with (GlobalAlloc's contract), so `direct()` tells both kinds apart without a header.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if direct(layout) {
            map_block(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { small().0.malloc(layout.size(), layout.align()) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if direct(layout) {
            map_block(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { small().0.calloc(layout.size(), layout.align()) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if direct(layout) {
            // SAFETY: `ptr` is the start of a mapping of this size made by map_block.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { small().0.free(ptr, layout.size(), layout.align()) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded up to the alignment, does not overflow.
        let new =
            unsafe { std::alloc::Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (direct(layout), direct(new)) {
            // SAFETY: forwarded with the caller's guarantees.
            (false, false) => unsafe {
                small()
                    .0
                    .realloc(ptr, layout.size(), layout.align(), new_size)
            },
            (true, true) => {
                // SAFETY: `ptr` is a whole mapping of layout.size() bytes; the kernel may move it.
                let p = unsafe {
                    libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if p == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    p.cast()
                }
            }
            _ => {
                // SAFETY: a new block of the new layout; the old one stays valid until copied.
                let q = unsafe { self.alloc(new) };
                if !q.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and do not overlap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                q
            }
        }
    }
}

/// One entry of a directory listing, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawDirent<'a> {
    /// d_ino.
    pub ino: u64,
    /// d_type (`libc::DT_*`; `DT_UNKNOWN` when the file system does not tell).
    pub kind: u8,
    /// The name, "." and ".." included.
    pub name: &'a OsStr,
}

/// Listing buffer size: 32 KiB holds ~1,000 entries of short names, so most directories take one
/// getdents64 and its end-of-directory call (libc's readdir reads 2 KiB at a time, and musl's opendir
/// maps and unmaps its buffer for every directory).
const DIRENT_BUF: usize = 32 << 10;

thread_local! {
    /// Each thread's listing buffer, taken while a listing runs (a nested listing makes its own).
    static DIRENT_SPARE: std::cell::Cell<Option<Box<[u8]>>> = const { std::cell::Cell::new(None) };
}

/// Call `f` with every entry of the directory `dir` (opened for reading, at its start), in the
/// order the file system returns them. `f` returns `Ok(false)` to stop early.
pub fn for_each_dirent<E: From<nix::errno::Errno>>(
    dir: BorrowedFd<'_>,
    mut f: impl FnMut(RawDirent<'_>) -> Result<bool, E>,
) -> Result<(), E> {
    let mut buf = DIRENT_SPARE
        .take()
        .unwrap_or_else(|| vec![0u8; DIRENT_BUF].into_boxed_slice());
    let res = (|| loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf, which we own; the fd is
        // borrowed and open.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if rc < 0 {
            return Err(E::from(nix::errno::Errno::last()));
        }
        let filled = &buf[..rc as usize];
        if filled.is_empty() {
            return Ok(());
        }
        let mut pos = 0;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while pos + 19 <= filled.len() {
            let rec = &filled[pos..];
            let reclen = usize::from(u16::from_ne_bytes([rec[16], rec[17]]));
            if reclen < 19 || reclen > rec.len() {
                return Err(E::from(nix::errno::Errno::EIO));
            }
            let raw = &rec[19..reclen];
            let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
            let mut ino = [0u8; 8];
            ino.copy_from_slice(&rec[..8]);
            let ent = RawDirent {
                ino: u64::from_ne_bytes(ino),
                kind: rec[18],
                name: OsStr::from_bytes(name),
            };
            if !f(ent)? {
                return Ok(());
            }
            pos += reclen;
        }
    })();
    DIRENT_SPARE.set(Some(buf));
    res
}

/// The names in directory `dir` (opened for reading, at its start), without "." and "..".
pub fn dir_names(dir: BorrowedFd<'_>) -> nix::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for_each_dirent(dir, |e| {
        if e.name != "." && e.name != ".." {
            names.push(e.name.to_owned());
        }
        Ok::<_, nix::errno::Errno>(true)
    })?;
    Ok(names)
}

/// The device number (major, minor) of the file system `file` is on, from the superblock only:
/// statx with AT_STATX_DONT_SYNC and an empty mask sends no request to a FUSE server (an fstat asks it
/// for the attributes, and on a fresh mount first waits for its INIT reply).
pub fn device_of(file: &std::fs::File) -> io::Result<(u32, u32)> {
    // SAFETY: statx writes only into `st`, a plain struct we own; the fd is borrowed and open.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the path is a NUL-terminated empty string (AT_EMPTY_PATH).
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            0,
            &mut st,
        )
    };
    check(rc as isize)?;
    Ok((st.stx_dev_major, st.stx_dev_minor))
}

#[cfg(test)]
mod tests {
    use super::{Allocator, DIRECT_MAP};
    use std::alloc::{GlobalAlloc, Layout};

    fn fill(p: *mut u8, n: usize) {
        for i in 0..n {
            // SAFETY: p holds at least n bytes.
            unsafe { p.add(i).write((i % 251) as u8) };
        }
    }

    fn check(p: *const u8, n: usize) {
        for i in 0..n {
            // SAFETY: p holds at least n bytes.
            assert_eq!(unsafe { p.add(i).read() }, (i % 251) as u8, "byte {i}");
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_on_both_sides_of_the_threshold() {
        for size in [24, DIRECT_MAP - 1, DIRECT_MAP, 16 << 20] {
            let l = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: a non-zero layout; freed with the same layout.
            unsafe {
                let p = Allocator.alloc_zeroed(l);
                assert!(!p.is_null());
                assert!((0..size).step_by(4093).all(|i| p.add(i).read() == 0));
                assert_eq!(p.add(size - 1).read(), 0);
                fill(p, size.min(1 << 20));
                Allocator.dealloc(p, l);
            }
        }
    }

    #[test]
    fn realloc_keeps_contents_across_the_threshold() {
        let sizes = [100, DIRECT_MAP + 5, 3 * DIRECT_MAP, 200, DIRECT_MAP, 64];
        let mut l = Layout::from_size_align(sizes[0], 16).unwrap();
        // SAFETY: each realloc gets the layout the block was made with; the last one frees it.
        unsafe {
            let mut p = Allocator.alloc(l);
            fill(p, l.size());
            for &n in &sizes[1..] {
                let kept = l.size().min(n);
                p = Allocator.realloc(p, l, n);
                assert!(!p.is_null());
                assert_eq!(p as usize % 16, 0);
                check(p, kept);
                l = Layout::from_size_align(n, 16).unwrap();
                fill(p, n);
            }
            Allocator.dealloc(p, l);
        }
    }

    #[test]
    fn over_aligned_big_blocks_stay_with_dlmalloc_and_keep_their_alignment() {
        let l = Layout::from_size_align(DIRECT_MAP * 2, 1 << 16).unwrap();
        // SAFETY: freed with the same layout.
        unsafe {
            let p = Allocator.alloc(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % (1 << 16), 0);
            fill(p, l.size());
            check(p, l.size());
            Allocator.dealloc(p, l);
        }
    }

    /// Names of a directory made with `n` files of long names (so a listing takes several reads).
    fn big_dir(n: usize) -> (tempfile::TempDir, Vec<std::ffi::OsString>) {
        let t = tempfile::tempdir().unwrap();
        let mut want = Vec::new();
        for i in 0..n {
            let name = format!("entry-{i:05}-{}", "x".repeat(60));
            std::fs::write(t.path().join(&name), b"").unwrap();
            want.push(std::ffi::OsString::from(name));
        }
        want.sort();
        (t, want)
    }

    #[test]
    fn dir_names_lists_every_entry_of_a_directory_bigger_than_the_buffer() {
        let (t, want) = big_dir(2000);
        let dir = std::fs::File::open(t.path()).unwrap();
        let mut got = super::dir_names(std::os::fd::AsFd::as_fd(&dir)).unwrap();
        got.sort();
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want);
    }

    #[test]
    fn nested_listings_and_early_stop_each_see_their_own_entries() {
        let (outer, outer_names) = big_dir(700);
        let (inner, inner_names) = big_dir(300);
        let od = std::fs::File::open(outer.path()).unwrap();
        let mut seen = 0usize;
        let mut nested_ok = false;
        super::for_each_dirent(std::os::fd::AsFd::as_fd(&od), |e| {
            if e.name == "." || e.name == ".." {
                return Ok(true);
            }
            assert!(outer_names.iter().any(|n| n.as_os_str() == e.name));
            seen += 1;
            if seen == 10 {
                // A listing inside a listing must not clobber the outer one's buffer.
                let id = std::fs::File::open(inner.path()).unwrap();
                let mut names = super::dir_names(std::os::fd::AsFd::as_fd(&id))?;
                names.sort();
                nested_ok = names == inner_names;
            }
            Ok::<_, nix::errno::Errno>(seen < 500)
        })
        .unwrap();
        assert_eq!(seen, 500, "stopped early at the callback's request");
        assert!(nested_ok, "the nested listing saw its own directory");
    }

    #[test]
    fn listing_a_file_fails_with_enotdir() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let fd = std::fs::File::open(f.path()).unwrap();
        assert_eq!(
            super::dir_names(std::os::fd::AsFd::as_fd(&fd)),
            Err(nix::errno::Errno::ENOTDIR)
        );
    }
}
