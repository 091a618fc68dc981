//! The page-cache state of what a start executes. Linux caches a file just written (by an installer, a
//! package manager, an image extraction) in the small folios its writes made, and a file read back from
//! disk in the large folios of readahead; starting the same strata binary from the first state was
//! 0.26 ms (5%) slower here than from the second (paired A/B, 300 rounds). Each tool was in whichever
//! state its installation and the machine's memory pressure had left it. The start cases drop each
//! subject's files from the page cache once it is prepared, so the warm-up starts read every tool back
//! the same way.

use std::path::{Path, PathBuf};

/// For the reports of the groups that time starts.
pub const METHOD: &str = "Page cache: once a subject is prepared (its one untimed start), its programs (the tool, \
    and what it runs: containerd's shim, conmon, the OCI runtime), their shared libraries (ldd) and the \
    containers' /bin/true leave the page cache (POSIX_FADV_DONTNEED), and the warm-up starts read them back: \
    a file just written by an installer or a package manager stays cached in the small folios of its writes, \
    one read back from disk in large ones, and the same strata binary started 0.26 ms (5%) faster from the \
    latter here. Results whose method lacks this sentence ran each tool in whichever state it was in.";
use std::process::Command;

/// The files of `programs` to drop: each program, the shared libraries `ldd` lists for it (none for a
/// static binary, or when ldd is missing) and, through a symlink, what it points to.
pub fn with_libraries(programs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for p in programs {
        let Ok(real) = p.canonicalize() else { continue };
        files.push(real);
        let Ok(out) = Command::new("ldd").arg(p).output() else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = line
                .split("=> ")
                .nth(1)
                .unwrap_or(line.trim())
                .split(" (")
                .next()
                .unwrap_or("");
            if let Ok(lib) = Path::new(path.trim()).canonicalize() {
                files.push(lib);
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// The file /bin/true runs in a container whose root is `root` (busybox's /bin/true is a symlink).
pub fn container_true(root: &Path) -> Option<PathBuf> {
    let link = root.join("bin/true");
    let target = match std::fs::read_link(&link) {
        Ok(t) if t.is_absolute() => root.join(t.strip_prefix("/").ok()?),
        Ok(t) => root.join("bin").join(t),
        Err(_) => link,
    };
    target.is_file().then_some(target)
}

/// Drops `files`' clean, unmapped pages from the page cache (POSIX_FADV_DONTNEED); the next use reads
/// them back. Returns the files that could not be opened.
pub fn drop_cached(files: &[PathBuf]) -> Vec<PathBuf> {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let mut failed = Vec::new();
    for f in files {
        match std::fs::File::open(f) {
            Ok(file) => {
                let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
            }
            Err(_) => failed.push(f.clone()),
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_comes_with_its_libraries_and_true_is_found_through_its_link() {
        let files = with_libraries(&[PathBuf::from("/bin/sh")]);
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains("libc")),
            "{files:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/busybox"), b"x").unwrap();
        std::os::unix::fs::symlink("busybox", dir.path().join("bin/true")).unwrap();
        assert_eq!(
            container_true(dir.path()),
            Some(dir.path().join("bin/busybox"))
        );
        assert!(drop_cached(&files).is_empty());
        assert_eq!(drop_cached(&[dir.path().join("nope")]).len(), 1);
    }
}
