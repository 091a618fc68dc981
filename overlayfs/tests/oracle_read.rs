//! Oracle: the read-only merged view of strata-overlayfs equals the kernel's.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;
use strata_overlayfs::WhiteoutForm;

#[test]
fn read_only_view_kernel_whiteouts() {
    let p = Pair::new(WhiteoutForm::Kernel, false, build_layers);
    p.compare("read-only, kernel-form whiteouts");
}

#[test]
fn read_only_view_oci_whiteouts() {
    let p = Pair::new(WhiteoutForm::Oci, false, build_layers);
    p.compare("read-only, OCI-form whiteouts");
}

#[test]
fn writable_view_before_changes() {
    let p = Pair::new(WhiteoutForm::Kernel, true, build_layers);
    p.compare("writable, untouched");
}

#[test]
fn lookups_and_errors_agree() {
    let p = Pair::new(WhiteoutForm::Oci, false, build_layers);
    for path in [
        "etc/passwd",
        "gone/a",
        "opq1/old",
        "opq2/old",
        "opq3/old",
        ".wh.x",
        "gone/.wh.a",
        "opq2/.wh..wh..opq",
        "merged/low",
        "emptydir",
        "bin/pw",
        "bin/abs",
        "bin/dangle",
        "replaced_by_file/x",
        "file_then_dir/inside",
        "etc/hosts/x",
    ] {
        p.both(&format!("stat {path}"), |m| {
            fs::symlink_metadata(m.join(path)).map(|md| (md.mode(), md.size(), md.nlink()))
        });
        p.both(&format!("open {path}"), |m| fs::read(m.join(path)));
    }
    p.both("readlink", |m| fs::read_link(m.join("bin/pw")));
    // An absolute symlink inside a layer resolves inside the mount, never on the host.
    p.both("follow abs symlink", |m| fs::read(m.join("bin/abs")));
    p.both("read big file", |m| {
        fs::read(m.join("big/data.bin")).map(|d| d.len())
    });
    p.both("statfs", |m| {
        nix::sys::statvfs::statvfs(m)
            .map(|s| s.name_max())
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
    });
}

#[test]
fn st_dev_is_one_value_and_readdir_offsets_are_stable() {
    let p = Pair::new(WhiteoutForm::Kernel, false, build_layers);
    let s = p.s();
    let dev = fs::metadata(s).unwrap().dev();
    for e in fs::read_dir(s.join("merged")).unwrap() {
        let md = fs::symlink_metadata(e.unwrap().path()).unwrap();
        assert_eq!(md.dev(), dev, "st_dev differs inside the mount");
    }
    // seekdir/telldir: resume from every offset and see the same tail.
    let fd = nix::fcntl::open(
        &s.join("names"),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    let names_at = |fd: &std::os::fd::OwnedFd| -> Vec<Vec<u8>> {
        let dup = nix::unistd::dup(fd).unwrap();
        let mut dir = nix::dir::Dir::from_fd(dup).unwrap();
        dir.iter()
            .map(|e| e.unwrap().file_name().to_bytes().to_vec())
            .collect()
    };
    let all = names_at(&fd);
    assert_eq!(all.len(), 6, "names dir: . .. and 4 names");
    let all2 = {
        nix::unistd::lseek(&fd, 0, nix::unistd::Whence::SeekSet).unwrap();
        names_at(&fd)
    };
    assert_eq!(all, all2, "a rewound listing differs");
}
