//! Every `unsafe` call of this crate, each behind a safe function.
//!
//! Extended attributes are reached through `/proc/self/fd/<dirfd>/<name>` with the `l*xattr` calls:
//! the directory fd is ours and `name` is a single component, so the final object is never followed
//! and no path can leave the layer (the same guarantee as RESOLVE_BENEATH for a one-component walk).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
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
