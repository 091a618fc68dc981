//! Oracle harness: build layer trees, mount copies with kernel overlayfs and with strata-overlayfs,
//! apply the same operations to both and compare what each shows.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_overlayfs::{Config, Server, WhiteoutForm};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name for this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fail (not skip) when a prerequisite is missing.
pub fn require_root_and_fuse() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (mount, mknod, trusted xattrs)"
    );
    assert!(
        Path::new("/dev/fuse").exists(),
        "these tests need /dev/fuse"
    );
    let fs = fs::read_to_string("/proc/filesystems").expect("read /proc/filesystems");
    assert!(
        fs.contains("overlay"),
        "these tests need kernel overlayfs (modprobe overlay)"
    );
}

pub fn run(cmd: &str, args: &[&OsStr]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?} failed");
}

pub fn setfattr(path: &Path, name: &str, value: &str) {
    run(
        "setfattr",
        &[
            OsStr::new("-h"),
            OsStr::new("-n"),
            OsStr::new(name),
            OsStr::new("-v"),
            OsStr::new(value),
            path.as_os_str(),
        ],
    );
}

pub fn mknod_char(path: &Path, major: u64, minor: u64) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

pub fn whiteout(dir: &Path, name: &str, form: WhiteoutForm) {
    match form {
        WhiteoutForm::Kernel => mknod_char(&dir.join(name), 0, 0),
        WhiteoutForm::Oci => fs::write(dir.join(format!(".wh.{name}")), b"").unwrap(),
    }
}

pub fn write(p: &Path, s: &str) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, s).unwrap();
}

/// Three lower layers (top-first) exercising every read-side feature, whiteouts in `form`.
/// Opaque directories use all three forms whatever `form` is (strata reads all of them).
pub fn build_layers(root: &Path, form: WhiteoutForm) -> Vec<PathBuf> {
    let l1 = root.join("l1");
    let l2 = root.join("l2");
    let l3 = root.join("l3");
    for l in [&l1, &l2, &l3] {
        fs::create_dir_all(l).unwrap();
    }
    // Bottom layer.
    write(&l3.join("etc/passwd"), "root:x:0:0\n");
    write(&l3.join("etc/hosts"), "127.0.0.1 localhost\n");
    write(&l3.join("bin/sh"), "#!shell\n");
    fs::set_permissions(l3.join("bin/sh"), fs::Permissions::from_mode(0o4755)).unwrap();
    write(&l3.join("gone/a"), "a");
    write(&l3.join("gone/b"), "b");
    write(&l3.join("opq1/old"), "old");
    write(&l3.join("opq2/old"), "old");
    write(&l3.join("opq3/old"), "old");
    write(&l3.join("merged/low"), "low");
    write(&l3.join("merged/sub/deep"), "deep");
    write(&l3.join("replaced_by_file/x"), "x");
    write(&l3.join("file_then_dir"), "f");
    write(&l3.join("hard/one"), "linked data");
    fs::hard_link(l3.join("hard/one"), l3.join("hard/two")).unwrap();
    fs::hard_link(l3.join("hard/one"), l3.join("etc/three")).unwrap();
    fs::hard_link(l3.join("hard/one"), l3.join("hard/four")).unwrap();
    std::os::unix::fs::symlink("../etc/passwd", l3.join("bin/pw")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", l3.join("bin/abs")).unwrap();
    std::os::unix::fs::symlink("dangling", l3.join("bin/dangle")).unwrap();
    write(&l3.join("x/attr"), "xattrs");
    setfattr(&l3.join("x/attr"), "user.color", "blue");
    setfattr(&l3.join("x/attr"), "trusted.mine", "t");
    nix::unistd::mkfifo(
        &l3.join("x/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    mknod_char(&l3.join("x/null"), 1, 3);
    fs::create_dir_all(l3.join("emptydir")).unwrap();
    write(
        &l3.join("big/data.bin"),
        &"0123456789abcdef".repeat(64 * 1024),
    );
    nix::unistd::chown(
        &l3.join("etc/hosts"),
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .unwrap();

    // Middle layer.
    write(&l2.join("etc/hosts"), "10.0.0.1 middle\n");
    fs::create_dir_all(l2.join("gone")).unwrap();
    whiteout(&l2.join("gone"), "a", form);
    write(&l2.join("opq1/new"), "new1");
    setfattr(&l2.join("opq1"), "trusted.overlay.opaque", "y");
    write(&l2.join("opq2/new"), "new2");
    write(&l2.join("opq2/.wh..wh..opq"), "");
    write(&l2.join("opq3/new"), "new3");
    setfattr(&l2.join("opq3"), "user.overlay.opaque", "y");
    write(&l2.join("merged/mid"), "mid");
    write(&l2.join("merged/sub/midsub"), "midsub");
    write(&l2.join("replaced_by_file"), "now a file");
    fs::create_dir_all(l2.join("file_then_dir")).unwrap();
    write(&l2.join("file_then_dir/inside"), "i");
    setfattr(&l2.join("merged"), "user.dirattr", "d");

    // Top layer.
    write(&l1.join("etc/motd"), "welcome\n");
    whiteout(&l1.join("etc"), "passwd", form);
    whiteout(&l1, "emptydir", form);
    write(&l1.join("merged/top"), "top");
    whiteout(&l1.join("merged"), "low", form);
    write(&l1.join("names/sp ace"), "1");
    write(&l1.join("names/\u{e9}t\u{e9}"), "2");
    write(&l1.join(format!("names/{}", "n".repeat(255))), "3");
    let odd = OsStr::from_bytes(b"odd\xff\x01name");
    fs::write(l1.join("names").join(odd), b"4").unwrap();
    vec![l1, l2, l3]
}

/// Rewrite OCI-form markers and user.overlay.opaque as kernel-form ones (the kernel mount here
/// understands only those).
pub fn oci_to_kernel(dir: &Path) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let p = e.path();
        let b = name.as_bytes();
        if b == b".wh..wh..opq" {
            fs::remove_file(&p).unwrap();
            setfattr(dir, "trusted.overlay.opaque", "y");
        } else if let Some(rest) = b.strip_prefix(b".wh.") {
            fs::remove_file(&p).unwrap();
            mknod_char(&dir.join(OsStr::from_bytes(rest)), 0, 0);
        } else if e.file_type().unwrap().is_dir() {
            let user_opq = Command::new("getfattr")
                .args(["-h", "--only-values", "-n", "user.overlay.opaque"])
                .arg(&p)
                .output()
                .unwrap();
            if user_opq.status.success() && user_opq.stdout == b"y" {
                run(
                    "setfattr",
                    &[
                        OsStr::new("-h"),
                        OsStr::new("-x"),
                        OsStr::new("user.overlay.opaque"),
                        p.as_os_str(),
                    ],
                );
                setfattr(&p, "trusted.overlay.opaque", "y");
            }
            oci_to_kernel(&p);
        }
    }
}

/// cp -a (keeps hard links, xattrs, devices, owners).
pub fn copy_tree(src: &Path, dst: &Path) {
    run("cp", &[OsStr::new("-a"), src.as_os_str(), dst.as_os_str()]);
}

/// A kernel overlay mount, lazily unmounted on drop.
pub struct KernelMount {
    pub mnt: PathBuf,
}

impl KernelMount {
    pub fn new(
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        mnt: &Path,
        index: bool,
    ) -> KernelMount {
        fs::create_dir_all(mnt).unwrap();
        let lower = lowers
            .iter()
            .map(|l| l.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut opts = format!("lowerdir={lower}");
        if let Some((u, w)) = upper {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
            if index {
                opts.push_str(",index=on");
            }
        }
        nix::mount::mount(
            Some("overlay"),
            mnt,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("kernel overlay mount ({opts}): {e}"));
        KernelMount {
            mnt: mnt.to_owned(),
        }
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A strata-overlayfs mount served in this process, stopped on drop.
pub struct StrataMount {
    pub mnt: PathBuf,
    pub server: Option<Server>,
}

impl StrataMount {
    pub fn new(
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        mnt: &Path,
        form: WhiteoutForm,
    ) -> StrataMount {
        fs::create_dir_all(mnt).unwrap();
        let cfg = Config {
            lowers: lowers.to_vec(),
            upper: upper.map(|u| u.0.to_owned()),
            work: upper.map(|u| u.1.to_owned()),
            whiteout: form,
            ..Config::default()
        };
        let server =
            strata_overlayfs::mount(cfg, mnt).unwrap_or_else(|e| panic!("strata mount: {e}"));
        StrataMount {
            mnt: mnt.to_owned(),
            server: Some(server),
        }
    }

    pub fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().expect("stop strata server");
        }
    }
}

impl Drop for StrataMount {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop();
        }
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// What the comparison sees of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ent {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: Option<u64>,
    pub content: Option<Vec<u8>>,
    pub target: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub nlink: Option<u64>,
    /// The first path (in sorted order) with the same st_ino: captures st_ino equalities.
    pub same_ino_as: String,
}

/// How a snapshot treats details that legitimately differ.
#[derive(Clone, Copy, Debug)]
pub struct SnapOpts {
    /// A raw upper layer: keep overlay xattrs except the private bookkeeping ones.
    pub raw_layer: bool,
    /// Compare nlink.
    pub nlink: bool,
    /// Check d_ino == st_ino for every entry (panics with the path when not).
    pub check_dino: bool,
}

pub const MERGED: SnapOpts = SnapOpts {
    raw_layer: false,
    nlink: true,
    check_dino: false,
};
pub const MERGED_STRICT: SnapOpts = SnapOpts {
    raw_layer: false,
    nlink: true,
    check_dino: true,
};
pub const LAYER: SnapOpts = SnapOpts {
    raw_layer: true,
    nlink: false,
    check_dino: false,
};

fn list_xattrs(p: &Path, raw: bool) -> BTreeMap<String, Vec<u8>> {
    use strata_overlayfs::sys;
    let mut out = BTreeMap::new();
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return out;
    };
    let dir = nix::fcntl::open(
        parent,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", parent.display()));
    use std::os::fd::AsFd;
    let list = sys::list_xattr(dir.as_fd(), Some(name))
        .unwrap_or_else(|e| panic!("listxattr {}: {e}", p.display()));
    for item in list.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let k = String::from_utf8_lossy(item).into_owned();
        if k.starts_with("security.") {
            continue;
        }
        if raw
            && k.starts_with("trusted.overlay.")
            && k != "trusted.overlay.opaque"
            && !k.starts_with("trusted.overlay.overlay.")
        {
            continue;
        }
        let v = sys::get_xattr(dir.as_fd(), Some(name), OsStr::from_bytes(item))
            .unwrap_or_else(|e| panic!("getxattr {} {k}: {e}", p.display()));
        out.insert(k, v);
    }
    out
}

/// Walk `root` and describe every object (paths relative to root).
pub fn snapshot(root: &Path, opts: SnapOpts) -> BTreeMap<String, Ent> {
    let mut raw: Vec<(String, PathBuf, fs::Metadata)> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p)
                .unwrap_or_else(|err| panic!("lstat {}: {err}", p.display()));
            if opts.check_dino {
                use std::os::unix::fs::DirEntryExt;
                assert_eq!(e.ino(), md.ino(), "d_ino != st_ino for {}", p.display());
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if md.is_dir() {
                stack.push(p.clone());
            }
            raw.push((rel, p, md));
        }
    }
    raw.sort_by(|a, b| a.0.cmp(&b.0));
    let mut first_with_ino: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (rel, p, md) in raw {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "chr"
        } else if ft.is_block_device() {
            "blk"
        } else {
            "sock"
        };
        // The kernel shares one inode among its whiteouts; that is not a hard link of the tree.
        let same = if kind == "chr" && md.rdev() == 0 {
            rel.clone()
        } else {
            first_with_ino
                .entry(md.ino())
                .or_insert_with(|| rel.clone())
                .clone()
        };
        let ent = Ent {
            kind,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_dir() { None } else { Some(md.size()) },
            content: if ft.is_file() {
                Some(fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
            } else {
                None
            },
            target: if ft.is_symlink() {
                Some(fs::read_link(&p).unwrap())
            } else {
                None
            },
            rdev: md.rdev(),
            xattrs: list_xattrs(&p, opts.raw_layer),
            nlink: if opts.nlink { Some(md.nlink()) } else { None },
            same_ino_as: same,
        };
        out.insert(rel, ent);
    }
    out
}

/// Panic with a readable difference when two snapshots differ.
pub fn assert_same(what: &str, kernel: &BTreeMap<String, Ent>, strata: &BTreeMap<String, Ent>) {
    let mut diffs = Vec::new();
    for (k, v) in kernel {
        match strata.get(k) {
            None => diffs.push(format!("  only in kernel: {k} {v:?}")),
            Some(s) if s != v => diffs.push(format!(
                "  differs: {k}\n    kernel {v:?}\n    strata {s:?}"
            )),
            _ => {}
        }
    }
    for (k, v) in strata {
        if !kernel.contains_key(k) {
            diffs.push(format!("  only in strata: {k} {v:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: kernel overlayfs and strata-overlayfs disagree:\n{}",
        diffs.join("\n")
    );
}

/// Two copies of the same layers, one mounted by the kernel and one by strata.
pub struct Pair {
    // Fields drop in declaration order: the mounts must go before the temporary directory.
    pub kernel: Option<KernelMount>,
    pub strata: Option<StrataMount>,
    pub kernel_upper: Option<PathBuf>,
    pub strata_upper: Option<PathBuf>,
    pub dir: tempfile::TempDir,
}

impl Pair {
    /// Build layers with `build`, copy them twice, mount both. `writable` adds an upper layer.
    pub fn new(
        form: WhiteoutForm,
        writable: bool,
        build: impl Fn(&Path, WhiteoutForm) -> Vec<PathBuf>,
    ) -> Pair {
        require_root_and_fuse();
        let dir = tempfile::Builder::new()
            .prefix(&unique("strata-ovl-test"))
            .tempdir()
            .unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        let lowers = build(&src, form);
        let mk = |side: &str| -> Vec<PathBuf> {
            let d = dir.path().join(side);
            fs::create_dir_all(&d).unwrap();
            lowers
                .iter()
                .map(|l| {
                    let dst = d.join(l.file_name().unwrap());
                    copy_tree(l, &dst);
                    if side == "k" {
                        oci_to_kernel(&dst);
                    }
                    dst
                })
                .collect()
        };
        let kl = mk("k");
        let sl = mk("s");
        let (ku, su) = if writable {
            for s in ["k", "s"] {
                fs::create_dir_all(dir.path().join(s).join("upper")).unwrap();
                fs::create_dir_all(dir.path().join(s).join("work")).unwrap();
            }
            (
                Some(dir.path().join("k/upper")),
                Some(dir.path().join("s/upper")),
            )
        } else {
            (None, None)
        };
        let kw = dir.path().join("k/work");
        let sw = dir.path().join("s/work");
        let kernel = KernelMount::new(
            &kl,
            ku.as_deref().map(|u| (u, kw.as_path())),
            &dir.path().join("k/mnt"),
            true,
        );
        let strata = StrataMount::new(
            &sl,
            su.as_deref().map(|u| (u, sw.as_path())),
            &dir.path().join("s/mnt"),
            form,
        );
        Pair {
            dir,
            kernel_upper: ku,
            strata_upper: su,
            kernel: Some(kernel),
            strata: Some(strata),
        }
    }

    pub fn k(&self) -> &Path {
        &self.kernel.as_ref().unwrap().mnt
    }

    pub fn s(&self) -> &Path {
        &self.strata.as_ref().unwrap().mnt
    }

    /// Run `op` on both mounts; the results (Ok or errno) must agree.
    pub fn both<T: PartialEq + std::fmt::Debug>(
        &self,
        what: &str,
        op: impl Fn(&Path) -> io::Result<T>,
    ) -> Option<T> {
        let k = op(self.k()).map_err(|e| e.raw_os_error().unwrap_or(-1));
        let s = op(self.s()).map_err(|e| e.raw_os_error().unwrap_or(-1));
        assert_eq!(k, s, "{what}: kernel gave {k:?}, strata gave {s:?}");
        k.ok()
    }

    /// Compare the merged trees.
    pub fn compare(&self, what: &str) {
        let k = snapshot(self.k(), MERGED);
        let s = snapshot(self.s(), MERGED_STRICT);
        assert_same(what, &k, &s);
    }

    /// Unmount both and compare the upper layers.
    pub fn compare_uppers(&mut self, what: &str) {
        drop(self.kernel.take());
        if let Some(s) = self.strata.take() {
            s.stop();
        }
        if let (Some(k), Some(s)) = (&self.kernel_upper, &self.strata_upper) {
            assert_same(
                &format!("{what} (upper layers)"),
                &snapshot(k, LAYER),
                &snapshot(s, LAYER),
            );
        }
    }
}
