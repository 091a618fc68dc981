//! Oracle: every kind of change, applied to kernel overlayfs (index=on) and to strata-overlayfs over
//! copies of the same layers, gives the same results, the same merged tree and the same upper layer.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use strata_overlayfs::WhiteoutForm;
use strata_overlayfs::sys::{RenameFlags, renameat2};

fn nx<T>(r: nix::Result<T>) -> io::Result<T> {
    r.map_err(|e| io::Error::from_raw_os_error(e as i32))
}

fn rename2(m: &Path, a: &str, b: &str, f: RenameFlags) -> io::Result<()> {
    nx(renameat2(AT_FDCWD, &m.join(a), AT_FDCWD, &m.join(b), f))
}

/// The raw `security.capability` of `p` (ENODATA when it has none).
fn file_cap(p: &Path) -> io::Result<Vec<u8>> {
    use std::os::fd::AsFd;
    let (parent, name) = (p.parent().unwrap(), p.file_name().unwrap());
    let dir = nx(nix::fcntl::open(
        parent,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
        Mode::empty(),
    ))?;
    strata_overlayfs::sys::get_xattr(
        dir.as_fd(),
        Some(name),
        std::ffi::OsStr::new("security.capability"),
    )
}

fn script(p: &Pair) {
    // Data changes copy up (owner, mode, xattrs, times kept).
    p.both("append to lower file", |m| {
        OpenOptions::new()
            .append(true)
            .open(m.join("etc/hosts"))?
            .write_all(b"added\n")
    });
    p.both("truncate lower file", |m| {
        OpenOptions::new()
            .write(true)
            .open(m.join("bin/sh"))?
            .set_len(3)
    });
    p.both("O_TRUNC open of big lower file", |m| {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.join("big/data.bin"))?;
        f.write_all(b"short")
    });
    p.both("chmod", |m| {
        fs::set_permissions(m.join("etc/motd"), fs::Permissions::from_mode(0o600))
    });
    p.both("chown", |m| {
        nx(nix::unistd::chown(
            &m.join("x/attr"),
            Some(nix::unistd::Uid::from_raw(5)),
            Some(nix::unistd::Gid::from_raw(6)),
        ))
    });
    p.both("chown symlink itself", |m| {
        nx(nix::unistd::fchownat(
            AT_FDCWD,
            &m.join("bin/dangle"),
            Some(nix::unistd::Uid::from_raw(7)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ))
    });
    p.both("utimes", |m| {
        nx(nix::sys::stat::utimensat(
            AT_FDCWD,
            &m.join("merged/top"),
            &TimeSpec::new(1000, 5),
            &TimeSpec::new(2000, 7),
            UtimensatFlags::NoFollowSymlink,
        ))
    });
    p.both("utimes omit/now", |m| {
        nx(nix::sys::stat::utimensat(
            AT_FDCWD,
            &m.join("merged/mid"),
            &TimeSpec::UTIME_OMIT,
            &TimeSpec::new(3000, 0),
            UtimensatFlags::NoFollowSymlink,
        ))?;
        Ok(fs::symlink_metadata(m.join("merged/mid"))?.mtime())
    });
    p.both("setxattr", |m| {
        let st = std::process::Command::new("setfattr")
            .args(["-n", "user.new", "-v", "v"])
            .arg(m.join("etc/motd"))
            .status()?;
        Ok(st.success())
    });
    p.both("setxattr on merged dir", |m| {
        let st = std::process::Command::new("setfattr")
            .args(["-n", "user.d2", "-v", "w"])
            .arg(m.join("merged"))
            .status()?;
        Ok(st.success())
    });
    p.both("removexattr", |m| {
        let st = std::process::Command::new("setfattr")
            .args(["-x", "user.color"])
            .arg(m.join("x/attr"))
            .status()?;
        Ok(st.success())
    });
    // File capabilities: the kernel asks for security.capability before the first write to
    // every inode and removes it on a write; strata answers that for files it made itself
    // without a syscall, which must stop once one is set.
    p.both("new file has no file capability", |m| {
        fs::write(m.join("capfile"), "x")?;
        file_cap(&m.join("capfile"))
    });
    p.both("setcap on a new file", |m| {
        let st = std::process::Command::new("setcap")
            .arg("cap_net_raw+ep")
            .arg(m.join("capfile"))
            .status()?;
        assert!(st.success(), "setcap failed");
        file_cap(&m.join("capfile"))
    });
    p.both("a write drops the file capability", |m| {
        OpenOptions::new()
            .append(true)
            .open(m.join("capfile"))?
            .write_all(b"y")?;
        file_cap(&m.join("capfile"))
    });
    p.both("setxattr of trusted.overlay.* is escaped", |m| {
        let st = std::process::Command::new("setfattr")
            .args(["-n", "trusted.overlay.opaque", "-v", "y"])
            .arg(m.join("merged"))
            .stderr(std::process::Stdio::null())
            .status()?;
        Ok(st.success())
    });
    // Hard links: linking a lower hard-linked file copies it up, links stay one inode.
    p.both("link lower hard-linked file", |m| {
        fs::hard_link(m.join("hard/one"), m.join("hard/link3"))
    });
    p.both("nlink after link", |m| {
        Ok(fs::metadata(m.join("hard/two"))?.nlink())
    });
    p.both("read through other link", |m| fs::read(m.join("etc/three")));
    // Renaming the other lower names of an object already copied up under one name (busybox
    // applets in an image are hard links: `mv /bin/true /bin/x; mv /bin/cat /bin/y`).
    p.both("rename lower hard link of copied-up object", |m| {
        fs::rename(m.join("hard/two"), m.join("hard/two.moved"))
    });
    p.both("rename lower hard link into another dir", |m| {
        fs::rename(m.join("etc/three"), m.join("hard/three.moved"))
    });
    p.both("nlink after renames", |m| {
        Ok(fs::metadata(m.join("hard/three.moved"))?.nlink())
    });
    p.both("unlink lower hard link of copied-up object", |m| {
        fs::remove_file(m.join("hard/four"))?;
        fs::remove_file(m.join("hard/two.moved"))?;
        fs::remove_file(m.join("hard/one"))?;
        Ok(fs::metadata(m.join("hard/link3"))?.nlink())
    });
    p.both("read renamed links", |m| {
        Ok((
            fs::read(m.join("hard/link3"))?,
            fs::read(m.join("hard/three.moved"))?,
            m.join("hard/two").exists(),
            m.join("etc/three").exists(),
        ))
    });
    // Removal.
    p.both("unlink copied-up file", |m| {
        fs::remove_file(m.join("etc/hosts"))
    });
    p.both("unlink lower-only symlink", |m| {
        fs::remove_file(m.join("bin/pw"))
    });
    p.both("unlink a directory", |m| fs::remove_file(m.join("merged")));
    p.both("rmdir a file", |m| fs::remove_dir(m.join("merged/top")));
    p.both("rmdir non-empty merged dir", |m| {
        fs::remove_dir(m.join("merged/sub"))
    });
    p.both("empty merged dir", |m| {
        fs::remove_file(m.join("merged/sub/deep"))?;
        fs::remove_file(m.join("merged/sub/midsub"))
    });
    p.both("rmdir merged-empty dir", |m| {
        fs::remove_dir(m.join("merged/sub"))
    });
    p.both("mkdir over whited-out dir is opaque", |m| {
        fs::create_dir(m.join("merged/sub"))
    });
    p.both("listing of recreated dir", |m| {
        Ok(fs::read_dir(m.join("merged/sub"))?.count())
    });
    p.both("mkdir over layer whiteout", |m| {
        fs::create_dir(m.join("emptydir"))
    });
    p.both("mkdir existing", |m| fs::create_dir(m.join("etc")));
    p.both("create over whiteout", |m| {
        fs::write(m.join("gone/a"), b"back")
    });
    p.both("create exclusive over existing", |m| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.join("etc/motd"))
            .map(drop)
    });
    p.both("create in a file", |m| fs::write(m.join("etc/motd/x"), b""));
    p.both("rm last visible and rmdir lower dir", |m| {
        fs::remove_file(m.join("gone/a"))?;
        fs::remove_file(m.join("gone/b"))?;
        fs::remove_dir(m.join("gone"))
    });
    // Special files.
    p.both("mkfifo", |m| {
        nx(nix::unistd::mkfifo(
            &m.join("x/fifo2"),
            Mode::from_bits_truncate(0o640),
        ))
    });
    p.both("mknod char", |m| {
        nx(nix::sys::stat::mknod(
            &m.join("x/zero"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 5),
        ))
    });
    p.both("symlink", |m| {
        std::os::unix::fs::symlink("../etc/motd", m.join("bin/motd"))
    });
    p.both("long name", |m| {
        fs::write(m.join("names").join("z".repeat(255)), b"l")
    });
    p.both("too long name", |m| {
        fs::write(m.join("names").join("z".repeat(256)), b"l")
    });
    p.both("path of about 4,000 bytes", |m| {
        let mut d = m.join("names");
        for i in 0..39 {
            d = d.join(format!("{i:02}{}", "p".repeat(98)));
        }
        fs::create_dir_all(&d)?;
        fs::write(d.join("leaf"), b"deep")?;
        fs::read(d.join("leaf"))
    });
    // Renames.
    p.both("rename lower file", |m| {
        fs::rename(m.join("etc/motd"), m.join("etc/motd2"))
    });
    p.both("rename lower dir is EXDEV", |m| {
        fs::rename(m.join("merged"), m.join("merged2"))
    });
    p.both("rename lower-only dir is EXDEV", |m| {
        fs::rename(m.join("x"), m.join("x2"))
    });
    p.both("rename upper dir", |m| {
        fs::create_dir(m.join("newdir"))?;
        fs::write(m.join("newdir/f"), b"f")?;
        fs::rename(m.join("newdir"), m.join("newdir2"))
    });
    p.both("rename over lower file", |m| {
        fs::rename(m.join("names/sp ace"), m.join("bin/sh"))
    });
    p.both("rename noreplace", |m| {
        rename2(m, "etc/motd2", "bin/sh", RenameFlags::NOREPLACE)
    });
    p.both("rename exchange", |m| {
        rename2(m, "etc/motd2", "merged/mid", RenameFlags::EXCHANGE)
    });
    p.both("rename exchange with missing", |m| {
        rename2(m, "etc/motd2", "etc/none", RenameFlags::EXCHANGE)
    });
    p.both("rename upper dir over empty lower dir", |m| {
        fs::remove_file(m.join("opq1/new"))?;
        fs::rename(m.join("newdir2"), m.join("opq1"))
    });
    p.both("rename dir into itself", |m| {
        fs::create_dir(m.join("nd"))?;
        fs::rename(m.join("nd"), m.join("nd/sub"))
    });
    // File I/O details.
    p.both("lseek data/hole", |m| {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.join("sparse"))?;
        f.seek(SeekFrom::Start(1 << 20))?;
        f.write_all(b"end")?;
        let d = nx(nix::unistd::lseek(&f, 0, nix::unistd::Whence::SeekData))?;
        let h = nx(nix::unistd::lseek(&f, d, nix::unistd::Whence::SeekHole))?;
        Ok((d, h))
    });
    p.both("fallocate", |m| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.join("sparse"))?;
        nx(nix::fcntl::fallocate(
            &f,
            nix::fcntl::FallocateFlags::empty(),
            0,
            8192,
        ))?;
        Ok(f.metadata()?.len())
    });
    p.both("copy_file_range from lower file", |m| {
        let src = fs::File::open(m.join("etc/three"))?;
        let dst = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.join("copied"))?;
        nx(nix::fcntl::copy_file_range(&src, None, &dst, None, 100))
    });
    p.both("read after write on same fd", |m| {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.join("x/attr"))?;
        f.write_all(b"XY")?;
        f.seek(SeekFrom::Start(0))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        f.sync_all()?;
        Ok(s)
    });
}

#[test]
fn changes_match_kernel_kernel_whiteouts() {
    let mut p = Pair::new(WhiteoutForm::Kernel, true, build_layers);
    script(&p);
    p.compare("after the change script");
    p.compare_uppers("after the change script");
}

#[test]
fn changes_match_kernel_oci_layers() {
    // OCI-form lower layers; strata still writes kernel-form whiteouts, so uppers compare too.
    let mut p = Pair::new(WhiteoutForm::Oci, true, build_layers);
    script(&p);
    p.compare("after the change script (OCI lowers)");
    // The strata side was mounted with whiteout=oci: its upper uses .wh. files; check the merged
    // view again after remounting that upper with strata.
    drop(p.kernel.take());
    if let Some(s) = p.strata.take() {
        s.stop();
    }
}

/// Lower layers with one file hard-linked three times (two names in one directory, one in
/// another), under an upper-most lower layer that does not touch it.
fn hard_link_layers(root: &Path, _form: WhiteoutForm) -> Vec<PathBuf> {
    let (l1, l2) = (root.join("l1"), root.join("l2"));
    write(&l1.join("top"), "top layer");
    write(&l2.join("d/x"), "hello\n");
    fs::create_dir_all(l2.join("e")).unwrap();
    fs::hard_link(l2.join("d/x"), l2.join("d/y")).unwrap();
    fs::hard_link(l2.join("d/x"), l2.join("e/z")).unwrap();
    vec![l1, l2]
}

/// One live alias: name, st_ino equal to the first live alias's, nlink, content.
type Alias = (String, bool, u64, Vec<u8>);

/// A step of a hard-link scenario: its name and what it does to a mount.
type Step<'a> = (&'a str, &'a dyn Fn(&Path) -> io::Result<()>);

/// The merged view of the aliases.
fn aliases(m: &Path) -> io::Result<Vec<Alias>> {
    let first = ["d/x", "d/y", "e/z", "d/n", "d/q"]
        .iter()
        .find_map(|n| fs::metadata(m.join(n)).ok())
        .map(|md| md.ino());
    let mut out = Vec::new();
    for n in ["d/x", "d/y", "e/z", "d/n", "d/q"] {
        match fs::metadata(m.join(n)) {
            Ok(md) => out.push((
                n.to_string(),
                Some(md.ino()) == first,
                md.nlink(),
                fs::read(m.join(n))?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn append(m: &Path, name: &str) -> io::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(m.join(name))?
        .write_all(b"more\n")
}

/// Run `steps` on both mounts over `hard_link_layers`; after each one the aliases, the merged
/// trees and at the end the upper layers (where the kernel keeps the copied-up aliases as one
/// inode) must agree.
fn hard_link_scenario(what: &str, steps: &[Step<'_>]) {
    let mut p = Pair::new(WhiteoutForm::Kernel, true, hard_link_layers);
    p.both(&format!("{what}: aliases before"), aliases);
    for (name, step) in steps {
        p.both(&format!("{what}: {name}"), step);
        p.both(&format!("{what}: aliases after {name}"), aliases);
        p.compare(&format!("{what}: after {name}"));
    }
    p.compare_uppers(what);
}

#[test]
fn hard_link_writes_match_kernel_index() {
    hard_link_scenario(
        "write through each alias",
        &[
            ("append via d/y", &|m| append(m, "d/y")),
            ("append via d/x", &|m| append(m, "d/x")),
            ("chmod via e/z", &|m| {
                fs::set_permissions(m.join("e/z"), fs::Permissions::from_mode(0o600))
            }),
            ("truncate via d/x", &|m| {
                OpenOptions::new()
                    .write(true)
                    .open(m.join("d/x"))?
                    .set_len(3)
            }),
        ],
    );
    hard_link_scenario(
        "metadata change first, then O_TRUNC through another alias",
        &[
            ("chown via e/z", &|m| {
                nx(nix::unistd::chown(
                    &m.join("e/z"),
                    Some(nix::unistd::Uid::from_raw(7)),
                    None,
                ))
            }),
            ("O_TRUNC write via d/y", &|m| {
                OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(m.join("d/y"))?
                    .write_all(b"new")
            }),
            ("setxattr via d/x", &|m| {
                let st = std::process::Command::new("setfattr")
                    .args(["-n", "user.k", "-v", "v"])
                    .arg(m.join("d/x"))
                    .status()?;
                assert!(st.success(), "setfattr failed");
                Ok(())
            }),
        ],
    );
}

#[test]
fn hard_link_removals_match_kernel_index() {
    hard_link_scenario(
        "unlink, link and rename of aliases",
        &[
            ("unlink lower alias d/x", &|m| {
                fs::remove_file(m.join("d/x"))
            }),
            ("append via e/z", &|m| append(m, "e/z")),
            ("link d/y to d/n", &|m| {
                fs::hard_link(m.join("d/y"), m.join("d/n"))
            }),
            ("unlink d/y", &|m| fs::remove_file(m.join("d/y"))),
            ("rename e/z to d/q", &|m| {
                fs::rename(m.join("e/z"), m.join("d/q"))
            }),
            ("append via d/n", &|m| append(m, "d/n")),
        ],
    );
}
