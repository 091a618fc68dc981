//! Deterministic generators for the test images, written as `docker save` or OCI image-layout archives.
//!
//! Determinism: every header is written explicitly (GNU format, fixed mtimes and numeric owners, no
//! user/group names, no atime/ctime), entries are sorted by path, gzip headers carry mtime 0, and
//! pseudo-random content comes from a fixed-seed SplitMix64 rather than the `rand` crate, whose
//! generators may change between versions. Two builds give byte-identical archives.

mod bigtree;
mod busybox;
mod fromdir;

pub use bigtree::build_bigtree;
pub use busybox::{build_busybox, build_busybox_with};
pub use fromdir::build_bigtree_from_dir;

use super::{Digest, ImageError};
use flate2::{Compression, GzBuilder};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// 2024-01-01T00:00:00Z: the base mtime of every generated entry.
pub const EPOCH: u64 = 1_704_067_200;

/// The container format of a generated archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// `docker save` layout (manifest.json, repositories, `<id>.json`, `<id>/layer.tar`): `docker load`s.
    #[default]
    DockerSave,
    /// OCI image layout (oci-layout, index.json, blobs/sha256/…).
    Oci,
}

/// How to write a test image.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuildOptions {
    pub format: ArchiveFormat,
    /// gzip the layers (deterministically).
    pub gzip: bool,
}

/// What was built.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub name: String,
    /// sha256 of the config: the id `docker load` and `strata image import` report.
    pub id: Digest,
    /// Digests of the uncompressed layer tars, bottom first.
    pub diff_ids: Vec<Digest>,
    /// Number of tar entries over all layers.
    pub entries: u64,
}

/// SplitMix64: tiny, fast, and fixed forever, which is what reproducible content needs.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// `min + below(span)` pseudo-random bytes.
    pub(crate) fn bytes_sized(&mut self, min: usize, span: u64) -> Vec<u8> {
        let n = min + self.below(span) as usize;
        self.bytes(n)
    }

    /// `min + below(span)` bytes of text.
    pub(crate) fn text_sized(&mut self, min: usize, span: u64) -> Vec<u8> {
        let n = min + self.below(span) as usize;
        self.text(n)
    }

    /// Text-like content (words and newlines), compressible like real files are.
    pub(crate) fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "layer",
            "overlay",
            "strata",
            "container",
            "the",
            "of",
            "and",
            "namespace",
            "cgroup",
            "mount",
            "file",
            "directory",
            "kernel",
            "user",
            "root",
            "image",
            "=",
            "#",
            "0",
            "1",
            "true",
            "false",
        ];
        let mut v = Vec::with_capacity(n + 16);
        while v.len() < n {
            let w = WORDS[self.below(WORDS.len() as u64) as usize];
            v.extend_from_slice(w.as_bytes());
            v.push(if self.below(8) == 0 { b'\n' } else { b' ' });
        }
        v.truncate(n);
        v
    }
}

#[derive(Clone)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    HardLink(String),
    Fifo,
}

#[derive(Clone)]
struct Item {
    node: Node,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Collects one layer's entries and writes them as a sorted, deterministic tar.
pub(crate) struct LayerBuilder {
    items: BTreeMap<String, Item>,
    mtime: u64,
}

impl LayerBuilder {
    pub(crate) fn new(mtime: u64) -> LayerBuilder {
        LayerBuilder {
            items: BTreeMap::new(),
            mtime,
        }
    }

    fn put(&mut self, path: &str, node: Node, mode: u32, uid: u64, gid: u64) -> &mut Item {
        let item = Item {
            node,
            mode,
            uid,
            gid,
            mtime: self.mtime,
            xattrs: Vec::new(),
        };
        self.items.insert(path.trim_matches('/').to_string(), item);
        self.items
            .get_mut(path.trim_matches('/'))
            .expect("just inserted")
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) {
        self.put(path, Node::Dir, mode, 0, 0);
    }

    pub(crate) fn dir_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64) {
        self.put(path, Node::Dir, mode, uid, gid);
    }

    /// Adds `path` and, with mode 0755 owned by root, every missing parent directory.
    pub(crate) fn dirs(&mut self, path: &str) {
        let mut sofar = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            if !sofar.is_empty() {
                sofar.push('/');
            }
            sofar.push_str(comp);
            if !self.items.contains_key(&sofar) {
                self.dir(&sofar, 0o755);
            }
        }
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.put(path, Node::File(data), mode, 0, 0);
    }

    pub(crate) fn file_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64, data: Vec<u8>) {
        self.put(path, Node::File(data), mode, uid, gid);
    }

    pub(crate) fn xattr(&mut self, path: &str, key: &str, value: &[u8]) {
        if let Some(item) = self.items.get_mut(path.trim_matches('/')) {
            item.xattrs.push((key.to_string(), value.to_vec()));
        }
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.put(path, Node::Symlink(target.to_string()), 0o777, 0, 0);
    }

    /// A hard link to `target`, which must sort before `path` (tar readers need the target first).
    pub(crate) fn hardlink(&mut self, path: &str, target: &str) {
        self.put(
            path,
            Node::HardLink(target.trim_matches('/').to_string()),
            0o644,
            0,
            0,
        );
    }

    pub(crate) fn fifo(&mut self, path: &str, mode: u32) {
        self.put(path, Node::Fifo, mode, 0, 0);
    }

    /// An OCI whiteout hiding `dir/name` of the layers below.
    pub(crate) fn whiteout(&mut self, dir: &str, name: &str) {
        let p = format!("{}/.wh.{name}", dir.trim_matches('/'));
        self.put(
            p.trim_start_matches('/'),
            Node::File(Vec::new()),
            0o644,
            0,
            0,
        );
    }

    /// An OCI opaque marker: `dir` hides everything the layers below have in it.
    pub(crate) fn opaque(&mut self, dir: &str) {
        let p = format!("{}/.wh..wh..opq", dir.trim_matches('/'));
        self.put(
            p.trim_start_matches('/'),
            Node::File(Vec::new()),
            0o644,
            0,
            0,
        );
    }

    /// Overrides owner and mtime of an entry already added (for trees copied from disk).
    pub(crate) fn set_owner_time(&mut self, path: &str, uid: u64, gid: u64, mtime: u64) {
        if let Some(item) = self.items.get_mut(path.trim_matches('/')) {
            (item.uid, item.gid, item.mtime) = (uid, gid, mtime);
        }
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        self.items.contains_key(path.trim_matches('/'))
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The layer as an uncompressed tar.
    pub(crate) fn finish(self) -> Result<Vec<u8>, ImageError> {
        let err = |e: std::io::Error| ImageError::TestImage(format!("writing layer tar: {e}"));
        let mut b = tar::Builder::new(Vec::new());
        for (path, item) in &self.items {
            if !item.xattrs.is_empty() {
                let keys: Vec<(String, &[u8])> = item
                    .xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                    .collect();
                b.append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
                    .map_err(err)?;
            }
            let mut h = tar::Header::new_gnu();
            h.set_mode(item.mode);
            h.set_uid(item.uid);
            h.set_gid(item.gid);
            h.set_mtime(item.mtime);
            h.set_size(0);
            match &item.node {
                Node::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(err)?;
                }
                Node::File(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, &data[..]).map_err(err)?;
                }
                Node::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    b.append_link(&mut h, path, target).map_err(err)?;
                }
                Node::HardLink(target) => {
                    if target.as_str() >= path.as_str() || !self.items.contains_key(target) {
                        return Err(ImageError::TestImage(format!(
                            "hard link {path} -> {target}: the target must be an earlier entry"
                        )));
                    }
                    // Header metadata of a hard link must match its target: GNU tar writes it so, and
                    // Docker applies it (a 0644 link header would make the target non-executable).
                    let t = &self.items[target];
                    h.set_mode(t.mode);
                    h.set_uid(t.uid);
                    h.set_gid(t.gid);
                    h.set_mtime(t.mtime);
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, path, target).map_err(err)?;
                }
                Node::Fifo => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    b.append_data(&mut h, path, std::io::empty()).map_err(err)?;
                }
            }
        }
        b.into_inner().map_err(err)
    }
}

/// An image ready to be written: layer tars bottom-first and the runtime part of its config.
pub(crate) struct ImageSpec {
    pub name: String,
    pub layers: Vec<Vec<u8>>,
    pub layer_comments: Vec<String>,
    pub config: serde_json::Value,
    pub entries: u64,
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Adds a member to the outer archive with fixed metadata.
fn add_member(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(EPOCH);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
}

fn add_dir_member(b: &mut tar::Builder<Vec<u8>>, path: &str) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_mtime(EPOCH);
    h.set_size(0);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, format!("{path}/"), std::io::empty())
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    // mtime 0 and no file name keep the gzip header free of build-time facts.
    let mut enc = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(6));
    enc.write_all(data)?;
    enc.finish()
}

/// Writes `spec` to `out` (atomically: a temp file renamed into place) and says what was written.
pub(crate) fn write_image(
    spec: ImageSpec,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuiltImage, ImageError> {
    let err = |e: std::io::Error| ImageError::TestImage(format!("writing {}: {e}", out.display()));
    let diff_ids: Vec<Digest> = spec.layers.iter().map(|l| Digest::of(l)).collect();
    let created = "2024-01-01T00:00:00Z";
    let history: Vec<_> = spec
        .layer_comments
        .iter()
        .map(|c| json!({"created": created, "created_by": c}))
        .collect();
    let config = json!({
        "architecture": host_arch(),
        "os": "linux",
        "created": created,
        "config": spec.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.as_str()).collect::<Vec<_>>()},
        "history": history,
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| err(e.into()))?;
    let id = Digest::of(&config_bytes);
    let blobs: Vec<Vec<u8>> = if opts.gzip {
        spec.layers
            .iter()
            .map(|l| gzip(l))
            .collect::<Result<_, _>>()
            .map_err(err)?
    } else {
        spec.layers
    };

    let mut b = tar::Builder::new(Vec::new());
    match opts.format {
        ArchiveFormat::DockerSave => {
            let mut paths = Vec::new();
            for (blob, diff) in blobs.iter().zip(&diff_ids) {
                add_dir_member(&mut b, diff.hex()).map_err(err)?;
                add_member(&mut b, &format!("{}/layer.tar", diff.hex()), blob).map_err(err)?;
                paths.push(format!("{}/layer.tar", diff.hex()));
            }
            add_member(&mut b, &format!("{}.json", id.hex()), &config_bytes).map_err(err)?;
            let manifest = json!([{"Config": format!("{}.json", id.hex()), "RepoTags": [spec.name], "Layers": paths}]);
            add_member(
                &mut b,
                "manifest.json",
                &serde_json::to_vec(&manifest).map_err(|e| err(e.into()))?,
            )
            .map_err(err)?;
            let (repo, tag) = spec.name.rsplit_once(':').unwrap_or((&spec.name, "latest"));
            let top = diff_ids
                .last()
                .map(|d| d.hex().to_string())
                .unwrap_or_default();
            let repos = json!({ repo: { tag: top } });
            add_member(
                &mut b,
                "repositories",
                &serde_json::to_vec(&repos).map_err(|e| err(e.into()))?,
            )
            .map_err(err)?;
        }
        ArchiveFormat::Oci => {
            let layer_type = if opts.gzip {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            let mut blob_list: Vec<(Digest, Vec<u8>)> = Vec::new();
            let layers: Vec<_> = blobs
                .into_iter()
                .map(|blob| {
                    let d = Digest::of(&blob);
                    let desc =
                        json!({"mediaType": layer_type, "digest": d.as_str(), "size": blob.len()});
                    blob_list.push((d, blob));
                    desc
                })
                .collect();
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": id.as_str(), "size": config_bytes.len()},
                "layers": layers,
            });
            let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| err(e.into()))?;
            let manifest_digest = Digest::of(&manifest_bytes);
            let tag = spec
                .name
                .rsplit_once(':')
                .map(|(_, t)| t)
                .unwrap_or("latest");
            let index = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest.as_str(),
                    "size": manifest_bytes.len(),
                    "annotations": {"io.containerd.image.name": spec.name, "org.opencontainers.image.ref.name": tag},
                }],
            });
            blob_list.push((id.clone(), config_bytes));
            blob_list.push((manifest_digest, manifest_bytes));
            blob_list.sort_by(|a, b| a.0.cmp(&b.0));
            blob_list.dedup_by(|a, b| a.0 == b.0);
            add_dir_member(&mut b, "blobs").map_err(err)?;
            add_dir_member(&mut b, "blobs/sha256").map_err(err)?;
            for (d, blob) in &blob_list {
                add_member(&mut b, &format!("blobs/sha256/{}", d.hex()), blob).map_err(err)?;
            }
            add_member(
                &mut b,
                "index.json",
                &serde_json::to_vec(&index).map_err(|e| err(e.into()))?,
            )
            .map_err(err)?;
            add_member(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(err)?;
        }
    }
    let bytes = b.into_inner().map_err(err)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".build-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(&bytes).map_err(err)?;
    // tempfile creates 0600; the archive is meant to be read by docker load and others.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(err)?;
    tmp.persist(out).map_err(|e| err(e.error))?;
    Ok(BuiltImage {
        name: spec.name,
        id,
        diff_ids,
        entries: spec.entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_fixed() {
        let mut r = Rng::new(1);
        assert_eq!(r.next_u64(), 0x910a_2dec_8902_5cc1);
    }
}
