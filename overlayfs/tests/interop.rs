//! Interop: an upper layer written through strata-overlayfs mounts with kernel overlayfs and shows
//! the same tree, and the other way round.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use strata_overlayfs::WhiteoutForm;

fn changes(m: &Path) {
    OpenOptions::new()
        .append(true)
        .open(m.join("etc/hosts"))
        .unwrap()
        .write_all(b"more\n")
        .unwrap();
    fs::remove_file(m.join("bin/pw")).unwrap();
    fs::remove_file(m.join("merged/sub/deep")).unwrap();
    fs::remove_file(m.join("merged/sub/midsub")).unwrap();
    fs::remove_dir(m.join("merged/sub")).unwrap();
    fs::create_dir(m.join("merged/sub")).unwrap();
    fs::write(m.join("merged/sub/fresh"), b"fresh").unwrap();
    fs::create_dir(m.join("emptydir")).unwrap();
    fs::rename(m.join("etc/motd"), m.join("etc/motd.moved")).unwrap();
    fs::hard_link(m.join("etc/motd.moved"), m.join("motd.link")).unwrap();
    std::os::unix::fs::symlink("etc/hosts", m.join("hosts.link")).unwrap();
    fs::remove_file(m.join("x/fifo")).unwrap();
    fs::write(m.join("gone/a"), b"recreated").unwrap();
}

struct Layout {
    _dir: tempfile::TempDir,
    lowers: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    mnt: PathBuf,
}

fn layout() -> Layout {
    require_root_and_fuse();
    let dir = tempfile::Builder::new()
        .prefix(&unique("strata-ovl-interop"))
        .tempdir()
        .unwrap();
    let lowers = build_layers(dir.path(), WhiteoutForm::Kernel);
    for l in &lowers {
        // Kernel-readable markers only (the fixture also uses the OCI opaque form).
        oci_to_kernel(l);
    }
    let (upper, work, mnt) = (
        dir.path().join("upper"),
        dir.path().join("work"),
        dir.path().join("mnt"),
    );
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    Layout {
        _dir: dir,
        lowers,
        upper,
        work,
        mnt,
    }
}

#[test]
fn strata_upper_mounts_with_kernel() {
    let l = layout();
    let s = StrataMount::new(
        &l.lowers,
        Some((&l.upper, &l.work)),
        &l.mnt,
        WhiteoutForm::Kernel,
    );
    changes(&s.mnt);
    let seen_by_strata = snapshot(&s.mnt, MERGED);
    s.stop();
    let k = KernelMount::new(&l.lowers, Some((&l.upper, &l.work)), &l.mnt, false);
    assert_same(
        "strata-written upper, read by the kernel",
        &snapshot(&k.mnt, MERGED),
        &seen_by_strata,
    );
}

#[test]
fn kernel_upper_mounts_with_strata() {
    let l = layout();
    let k = KernelMount::new(&l.lowers, Some((&l.upper, &l.work)), &l.mnt, false);
    changes(&k.mnt);
    let seen_by_kernel = snapshot(&k.mnt, MERGED);
    drop(k);
    let s = StrataMount::new(
        &l.lowers,
        Some((&l.upper, &l.work)),
        &l.mnt,
        WhiteoutForm::Kernel,
    );
    assert_same(
        "kernel-written upper, read by strata",
        &seen_by_kernel,
        &snapshot(&s.mnt, MERGED_STRICT),
    );
    s.stop();
}
