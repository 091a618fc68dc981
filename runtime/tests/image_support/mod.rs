//! Helpers shared by the image_* integration tests: stores in temp dirs, hand-made archives (including
//! hostile ones), and a tree walker that records everything a round trip must preserve.

#![allow(dead_code)]

use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use strata_runtime::image::testimages::{self, ArchiveFormat, BuildOptions, BuiltImage};
use strata_runtime::image::{Digest, Store};
use tempfile::TempDir;

/// Fails the test unless it runs as root: extraction sets owners, device whiteouts and trusted xattrs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (owners, whiteout device nodes, trusted.* xattrs, overlay mounts)"
    );
}

/// A fresh store in its own temp dir (never /var/lib/strata).
pub fn store() -> (TempDir, Store) {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("strata-image-test-")
        .tempdir()
        .unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// A fresh store on tmpfs (/dev/shm), for tests that create tens of thousands of files: on this shared
/// machine's ext4 that takes tens of seconds under load, and the other tests cover the store on ext4.
pub fn store_on_tmpfs() -> (TempDir, Store) {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("strata-image-test-")
        .tempdir_in("/dev/shm")
        .expect("a tmpfs at /dev/shm");
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// The busybox test image as a docker-save archive in `dir`.
pub fn busybox(dir: &Path) -> (PathBuf, BuiltImage) {
    busybox_as(dir, ArchiveFormat::DockerSave, false)
}

/// Builds the busybox image in another format into `dir`.
pub fn busybox_as(dir: &Path, format: ArchiveFormat, gzip: bool) -> (PathBuf, BuiltImage) {
    let p = dir.join(format!("busybox-{format:?}-{gzip}.tar"));
    let b = testimages::build_busybox_with(&p, &BuildOptions { format, gzip }).unwrap();
    (p, b)
}

/// Nothing but empty directories (and the lock file) may remain in a store after a failed import.
pub fn assert_store_empty(store: &Store) {
    for sub in ["layers/sha256", "images", "tmp"] {
        let d = store.root().join(sub);
        let left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            left.is_empty(),
            "{} is not empty after a failed import: {left:?}",
            d.display()
        );
    }
}

/// One tar entry for a hand-made layer; `name` and `link` are written raw, so hostile paths survive.
pub struct RawEntry {
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub dev: (u32, u32),
}

impl RawEntry {
    pub fn file(name: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            name: name.as_bytes().to_vec(),
            kind: tar::EntryType::Regular,
            data: data.to_vec(),
            link: Vec::new(),
            mode: 0o644,
            dev: (0, 0),
        }
    }
    pub fn dir(name: &str) -> RawEntry {
        RawEntry {
            kind: tar::EntryType::Directory,
            mode: 0o755,
            ..RawEntry::file(name, b"")
        }
    }
    pub fn symlink(name: &str, target: &str) -> RawEntry {
        RawEntry {
            kind: tar::EntryType::Symlink,
            link: target.as_bytes().to_vec(),
            mode: 0o777,
            ..RawEntry::file(name, b"")
        }
    }
    pub fn hardlink(name: &str, target: &str) -> RawEntry {
        RawEntry {
            kind: tar::EntryType::Link,
            link: target.as_bytes().to_vec(),
            ..RawEntry::file(name, b"")
        }
    }
    pub fn device(name: &str, kind: tar::EntryType, major: u32, minor: u32) -> RawEntry {
        RawEntry {
            kind,
            dev: (major, minor),
            ..RawEntry::file(name, b"")
        }
    }
}

/// A layer tar from raw entries (ustar headers; names up to 100 bytes).
pub fn raw_layer(entries: &[RawEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(&e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(&e.link);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(e.data.len() as u64);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A hand-made docker-save archive. By default everything is consistent; tests break one thing.
pub struct DockerArchive {
    pub layers: Vec<Vec<u8>>,
    pub name: Option<String>,
    /// Override the config's diff_ids.
    pub diff_ids: Option<Vec<String>>,
    /// Override the layer paths manifest.json names.
    pub layer_paths: Option<Vec<String>>,
    /// Bytes appended to the config after its digest is taken (a config that does not match its name).
    pub tamper_config: bool,
}

impl DockerArchive {
    pub fn new(layers: Vec<Vec<u8>>) -> DockerArchive {
        DockerArchive {
            layers,
            name: Some("test-image:latest".into()),
            diff_ids: None,
            layer_paths: None,
            tamper_config: false,
        }
    }

    pub fn write(&self, path: &Path) -> PathBuf {
        let diff_ids = self.diff_ids.clone().unwrap_or_else(|| {
            self.layers
                .iter()
                .map(|l| Digest::of(l).to_string())
                .collect()
        });
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Env": ["A=1"], "WorkingDir": "/w", "User": "1000:1000",
                       "Entrypoint": ["/bin/env"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let mut config_bytes = serde_json::to_vec(&config).unwrap();
        let config_name = format!("{}.json", Digest::of(&config_bytes).hex());
        if self.tamper_config {
            config_bytes.extend_from_slice(b" ");
        }
        let mut b = tar::Builder::new(Vec::new());
        let mut paths = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("layer{i}/layer.tar");
            add(&mut b, &p, layer);
            paths.push(p);
        }
        add(&mut b, &config_name, &config_bytes);
        let tags: Vec<&String> = self.name.iter().collect();
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": tags,
            "Layers": self.layer_paths.clone().unwrap_or(paths),
        }]);
        add(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        fs::write(path, b.into_inner().unwrap()).unwrap();
        path.to_path_buf()
    }
}

pub fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

/// Everything about one filesystem object that a faithful round trip keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub link: Option<String>,
    pub rdev: u64,
    /// The first path (in sorted order) of this node's inode: equal for hard links.
    pub inode_of: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub sha256: Option<String>,
}

/// Walks `root` without following symlinks. Keys are paths relative to `root` ("" is the root).
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    p: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut BTreeMap<u64, String>,
) {
    let md = fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
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
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "other"
    };
    let inode_of = inodes
        .entry(md.ino())
        .or_insert_with(|| rel.clone())
        .clone();
    let mut xattrs = BTreeMap::new();
    if let Ok(names) = xattr::list(p) {
        for n in names {
            let v = xattr::get(p, &n).unwrap().unwrap_or_default();
            xattrs.insert(n.to_string_lossy().into_owned(), v);
        }
    }
    let sha256 = ft
        .is_file()
        .then(|| Digest::of(&fs::read(p).unwrap()).to_string());
    out.insert(
        rel.clone(),
        Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), md.mtime_nsec()),
            size: if ft.is_dir() { 0 } else { md.size() },
            link: ft
                .is_symlink()
                .then(|| fs::read_link(p).unwrap().to_string_lossy().into_owned()),
            rdev: md.rdev(),
            inode_of,
            xattrs,
            sha256,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for n in names {
            walk(root, &n, out, inodes);
        }
    }
}

/// A read-only kernel overlay mount, lazily unmounted when dropped (also when a test fails).
pub struct OverlayMount {
    pub dir: TempDir,
}

impl OverlayMount {
    pub fn new(lower_top_first: &[PathBuf]) -> OverlayMount {
        let dir = tempfile::Builder::new()
            .prefix("strata-image-ovl-")
            .tempdir()
            .unwrap();
        let lower: Vec<String> = lower_top_first
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let opts = format!("lowerdir={}", lower.join(":"));
        nix::mount::mount(
            Some("overlay"),
            dir.path(),
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t overlay -o {opts} failed: {e}"));
        OverlayMount { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}
