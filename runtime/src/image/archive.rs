//! Readers for image archives: `docker save` (manifest.json + config + layer tars, old layout or the
//! blobs/sha256 one) and OCI image layout (oci-layout + index.json + blobs), with plain or gzip layers.
//!
//! The outer tar is indexed once (member → offset, size); layers are then streamed straight from the
//! archive file without copying. Every byte that names itself by digest is verified: the config against
//! its file name or descriptor, OCI blobs against their descriptors, and each layer's uncompressed stream
//! against the config's `rootfs.diff_ids`.

use super::digest::HashingReader;
use super::{Digest, ImageError};
use flate2::bufread::MultiGzDecoder;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};

/// JSON members larger than this are refused rather than read into memory.
const MAX_JSON: u64 = 64 << 20;

/// Where a member's bytes live: inside the outer archive, or (for an unpacked layout) in its own file.
#[derive(Clone, Debug)]
struct Member {
    file: Option<PathBuf>,
    offset: u64,
    size: u64,
}

/// One layer as the archive describes it.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    /// The member path inside the archive.
    pub path: String,
    /// The digest of the stored (possibly compressed) bytes, when the archive states it.
    pub blob_digest: Option<Digest>,
    /// The digest of the uncompressed tar, from the config's rootfs.diff_ids.
    pub diff_id: Digest,
}

/// A parsed, verified-as-far-as-possible image archive. Layers are verified while they are read.
pub struct ImageSource {
    file: PathBuf,
    members: HashMap<String, Member>,
    /// The names the archive gives the image (docker RepoTags or OCI ref annotations), possibly none.
    pub names: Vec<String>,
    /// sha256 of the config blob: the image id.
    pub id: Digest,
    pub config: ImageConfiguration,
    pub layers: Vec<LayerBlob>,
    /// A decompressed copy of a gzip'd outer archive, removed when the source is dropped.
    _scratch: Option<tempfile::TempPath>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageSource {
    /// Opens and indexes `archive`: a tar (gzip'd ones are first decompressed into `scratch_dir`) or a
    /// directory holding an unpacked docker-save or OCI layout.
    pub fn open(archive: &Path, scratch_dir: &Path) -> Result<ImageSource, ImageError> {
        let shown = archive.display().to_string();
        if archive.is_dir() {
            let members = index_dir(archive)?;
            return ImageSource::from_members(archive.to_path_buf(), members, None, &shown);
        }
        let mut f = File::open(archive).map_err(ImageError::io(format!("open {shown}")))?;
        let mut magic = [0u8; 2];
        let n = f
            .read(&mut magic)
            .map_err(ImageError::io(format!("read {shown}")))?;
        let (file, scratch) = if n == 2 && magic == [0x1f, 0x8b] {
            let tmp = tempfile::Builder::new()
                .prefix("archive-")
                .tempfile_in(scratch_dir)
                .map_err(ImageError::io("create scratch file"))?;
            f.seek(SeekFrom::Start(0))
                .map_err(ImageError::io(format!("read {shown}")))?;
            let (mut out, tmp_path) = tmp.into_parts();
            io::copy(&mut MultiGzDecoder::new(BufReader::new(f)), &mut out)
                .map_err(ImageError::io(format!("decompress {shown}")))?;
            (tmp_path.to_path_buf(), Some(tmp_path))
        } else {
            (archive.to_path_buf(), None)
        };
        let members = index(&file, &shown)?;
        ImageSource::from_members(file, members, scratch, &shown)
    }

    fn from_members(
        file: PathBuf,
        members: HashMap<String, Member>,
        scratch: Option<tempfile::TempPath>,
        shown: &str,
    ) -> Result<ImageSource, ImageError> {
        let mut src = ImageSource {
            file,
            members,
            names: Vec::new(),
            id: Digest::of(b""),
            config: ImageConfiguration::default(),
            layers: Vec::new(),
            _scratch: scratch,
        };
        if src.members.contains_key("manifest.json") {
            src.read_docker(shown)?;
        } else if src.members.contains_key("index.json") {
            src.read_oci(shown)?;
        } else {
            return Err(ImageError::Archive(format!(
                "{shown}: neither a docker-save archive (no manifest.json) nor an OCI image layout (no index.json)"
            )));
        }
        Ok(src)
    }

    fn read_docker(&mut self, shown: &str) -> Result<(), ImageError> {
        let manifest: Vec<DockerManifestEntry> =
            serde_json::from_slice(&self.read_small("manifest.json")?)
                .map_err(|e| ImageError::Archive(format!("{shown}: manifest.json: {e}")))?;
        let entry = match manifest.len() {
            1 => manifest.into_iter().next().expect("one entry"),
            0 => {
                return Err(ImageError::Archive(format!(
                    "{shown}: manifest.json lists no image"
                )));
            }
            n => {
                return Err(ImageError::Archive(format!(
                    "{shown}: manifest.json lists {n} images; strata imports archives of one image"
                )));
            }
        };
        let config_bytes = self.read_small(&entry.config)?;
        let id = Digest::of(&config_bytes);
        if let Some(named) = digest_in_name(&entry.config) {
            named.verify(&id, format!("config {}", entry.config))?;
        }
        self.set_config(&config_bytes, id, &entry.config)?;
        if entry.layers.len() != self.layers_expected() {
            return Err(ImageError::Archive(format!(
                "{shown}: manifest.json lists {} layers but the config has {} diff_ids",
                entry.layers.len(),
                self.layers_expected()
            )));
        }
        let diff_ids = self.diff_ids()?;
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let path = self.resolve(path)?;
            self.layers.push(LayerBlob {
                blob_digest: digest_in_name(&path),
                path,
                diff_id,
            });
        }
        self.names = entry.repo_tags.unwrap_or_default();
        Ok(())
    }

    fn read_oci(&mut self, shown: &str) -> Result<(), ImageError> {
        let index = ImageIndex::from_reader(&self.read_small("index.json")?[..])
            .map_err(|e| ImageError::Archive(format!("{shown}: index.json: {e}")))?;
        let mut descs = index.manifests().clone();
        // Descend through nested indexes to one image manifest, preferring this machine's platform.
        let manifest = loop {
            let desc = pick_manifest(&descs).ok_or_else(|| {
                ImageError::Archive(format!(
                    "{shown}: index.json names no image manifest for this platform"
                ))
            })?;
            // containerd's annotation holds a full reference; OCI's ref.name is often only a tag
            // ("latest"), which names no image, so it counts only when it looks like a reference.
            let ann = desc.annotations().clone().unwrap_or_default();
            if let Some(n) = ann.get("io.containerd.image.name") {
                self.names.push(n.clone());
            }
            if let Some(n) = ann
                .get("org.opencontainers.image.ref.name")
                .filter(|n| n.contains([':', '/']))
            {
                self.names.push(n.clone());
            }
            let bytes = self.read_blob(desc.digest().as_ref(), Some(desc.size()))?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Archive(format!("manifest {}: {e}", desc.digest())))?;
            if value.get("manifests").is_some() {
                let nested = ImageIndex::from_reader(&bytes[..])
                    .map_err(|e| ImageError::Archive(format!("index {}: {e}", desc.digest())))?;
                descs = nested.manifests().clone();
                continue;
            }
            break ImageManifest::from_reader(&bytes[..])
                .map_err(|e| ImageError::Archive(format!("manifest {}: {e}", desc.digest())))?;
        };
        let cfg = manifest.config();
        let config_bytes = self.read_blob(cfg.digest().as_ref(), Some(cfg.size()))?;
        self.set_config(
            &config_bytes,
            Digest::of(&config_bytes),
            cfg.digest().as_ref(),
        )?;
        if manifest.layers().len() != self.layers_expected() {
            return Err(ImageError::Archive(format!(
                "{shown}: manifest lists {} layers but the config has {} diff_ids",
                manifest.layers().len(),
                self.layers_expected()
            )));
        }
        let diff_ids = self.diff_ids()?;
        for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let digest = Digest::parse(desc.digest().as_ref())?;
            let path = format!("blobs/sha256/{}", digest.hex());
            let member = self.member(&path)?;
            if member.size != desc.size() {
                return Err(ImageError::Archive(format!(
                    "layer blob {digest}: size {} but the manifest says {}",
                    member.size,
                    desc.size()
                )));
            }
            self.layers.push(LayerBlob {
                path,
                blob_digest: Some(digest),
                diff_id,
            });
        }
        Ok(())
    }

    fn set_config(&mut self, bytes: &[u8], id: Digest, what: &str) -> Result<(), ImageError> {
        self.config = ImageConfiguration::from_reader(bytes)
            .map_err(|e| ImageError::Archive(format!("config {what}: {e}")))?;
        self.id = id;
        Ok(())
    }

    fn layers_expected(&self) -> usize {
        self.config.rootfs().diff_ids().len()
    }

    fn diff_ids(&self) -> Result<Vec<Digest>, ImageError> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect()
    }

    /// Resolves a member path, following symlinks inside the archive (old `docker save` links repeated
    /// layers to their first copy).
    fn resolve(&self, path: &str) -> Result<String, ImageError> {
        self.member(path)?;
        Ok(path.trim_start_matches("./").to_string())
    }

    fn member(&self, path: &str) -> Result<Member, ImageError> {
        self.members
            .get(path.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| {
                ImageError::Archive(format!(
                    "archive is missing blob {path:?} named by its manifest"
                ))
            })
    }

    fn read_small(&self, path: &str) -> Result<Vec<u8>, ImageError> {
        let m = self.member(path)?;
        if m.size > MAX_JSON {
            return Err(ImageError::Archive(format!(
                "{path}: {} bytes is too large for metadata",
                m.size
            )));
        }
        let mut buf = Vec::with_capacity(m.size as usize);
        self.open_member(&m)?
            .read_to_end(&mut buf)
            .map_err(ImageError::io(format!("read {path}")))?;
        if buf.len() as u64 != m.size {
            return Err(ImageError::Archive(format!("{path}: truncated archive")));
        }
        Ok(buf)
    }

    /// Reads an OCI blob by digest, verifying digest and size.
    fn read_blob(&self, digest: &str, size: Option<u64>) -> Result<Vec<u8>, ImageError> {
        let digest = Digest::parse(digest)?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let bytes = self.read_small(&path)?;
        digest.verify(&Digest::of(&bytes), format!("blob {path}"))?;
        if let Some(size) = size.filter(|&s| s != bytes.len() as u64) {
            return Err(ImageError::Archive(format!(
                "blob {path}: {} bytes but its descriptor says {size}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn open_member(&self, m: &Member) -> Result<Take<File>, ImageError> {
        let path = m.file.as_ref().unwrap_or(&self.file);
        let mut f = File::open(path).map_err(ImageError::io(format!("open {}", path.display())))?;
        f.seek(SeekFrom::Start(m.offset))
            .map_err(ImageError::io(format!("seek {}", path.display())))?;
        Ok(f.take(m.size))
    }

    /// Opens layer `i` as an uncompressed tar stream that hashes itself; see [`LayerReader::finish`].
    pub fn layer_reader(&self, i: usize) -> Result<LayerReader, ImageError> {
        let blob = &self.layers[i];
        let member = self.member(&blob.path)?;
        let mut raw =
            BufReader::with_capacity(256 << 10, HashingReader::new(self.open_member(&member)?));
        let head = raw
            .fill_buf()
            .map_err(ImageError::io(format!("read {}", blob.path)))?;
        let decoded = match head {
            [0x1f, 0x8b, ..] => Decoded::Gzip(MultiGzDecoder::new(raw)),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => {
                return Err(ImageError::Archive(format!(
                    "layer {}: zstd-compressed layers are not supported",
                    blob.path
                )));
            }
            _ => Decoded::Plain(raw),
        };
        Ok(LayerReader {
            inner: HashingReader::new(decoded),
            blob: blob.clone(),
            stored_size: member.size,
        })
    }
}

enum Decoded {
    Plain(BufReader<HashingReader<Take<File>>>),
    Gzip(MultiGzDecoder<BufReader<HashingReader<Take<File>>>>),
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
        }
    }
}

/// A layer's uncompressed tar. Read it to the end (or as far as a tar reader goes), then call
/// [`finish`](LayerReader::finish) to verify both digests.
pub struct LayerReader {
    inner: HashingReader<Decoded>,
    blob: LayerBlob,
    stored_size: u64,
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl LayerReader {
    /// Drains the rest of the stream and checks the uncompressed digest against the diff_id and the stored
    /// bytes against the blob digest. Returns the uncompressed size.
    pub fn finish(self) -> Result<u64, ImageError> {
        let what = self.blob.path.clone();
        let rd = ImageError::io(format!("read layer {what}"));
        let mut inner = self.inner;
        if let Err(e) = io::copy(&mut inner, &mut io::sink()) {
            return Err(rd(e));
        }
        let (decoded, diff, size) = inner.into_parts();
        self.blob.diff_id.verify(&diff, format!("layer {what}"))?;
        let mut raw = match decoded {
            Decoded::Plain(r) => r,
            Decoded::Gzip(g) => g.into_inner(),
        };
        // Bytes after the gzip stream still belong to the blob's digest.
        if let Err(e) = io::copy(&mut raw, &mut io::sink()) {
            return Err(ImageError::io(format!("read layer {what}"))(e));
        }
        let (_, stored, stored_size) = raw.into_inner().into_parts();
        if stored_size != self.stored_size {
            return Err(ImageError::Archive(format!(
                "layer {what}: truncated archive"
            )));
        }
        if let Some(expected) = &self.blob.blob_digest {
            expected.verify(&stored, format!("layer blob {what}"))?;
        }
        Ok(size)
    }
}

/// The digest a member path spells (`blobs/sha256/<hex>` or `<hex>.json`), if it spells one.
fn digest_in_name(path: &str) -> Option<Digest> {
    let path = path.trim_start_matches("./");
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Picks the image manifest (or nested index) for this machine from an index's descriptors.
fn pick_manifest(descs: &[oci_spec::image::Descriptor]) -> Option<&oci_spec::image::Descriptor> {
    if descs.len() <= 1 {
        return descs.first();
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    descs
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == arch
            })
        })
        .or_else(|| descs.iter().find(|d| d.platform().is_none()))
}

/// Indexes an unpacked layout: every regular file below `dir` (symlinks are not followed).
fn index_dir(dir: &Path) -> Result<HashMap<String, Member>, ImageError> {
    let mut members = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(ImageError::io(format!("read {}", d.display())))? {
            let e = e.map_err(ImageError::io(format!("read {}", d.display())))?;
            let md = e
                .metadata()
                .map_err(ImageError::io(format!("stat {}", e.path().display())))?;
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .expect("below dir")
                    .to_string_lossy()
                    .into_owned();
                members.insert(
                    rel,
                    Member {
                        file: Some(e.path()),
                        offset: 0,
                        size: md.len(),
                    },
                );
            }
        }
    }
    Ok(members)
}

/// Indexes the outer tar: regular members by normalized path; symlinks resolved to their targets.
fn index(file: &Path, shown: &str) -> Result<HashMap<String, Member>, ImageError> {
    let f = File::open(file).map_err(ImageError::io(format!("open {shown}")))?;
    let mut ar = tar::Archive::new(BufReader::new(f));
    let mut members = HashMap::new();
    let mut links = Vec::new();
    // Seeking past members (instead of reading them) keeps indexing a large archive near-instant.
    let entries = ar
        .entries_with_seek()
        .map_err(|e| ImageError::Archive(format!("{shown}: not a tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            ImageError::Archive(format!("{shown}: corrupt or truncated archive: {e}"))
        })?;
        let path = super::extract::normalize(&entry.path_bytes()).map_err(|r| {
            ImageError::Archive(format!("{shown}: member {:?}: {r}", entry.path_bytes()))
        })?;
        let path = path.to_string_lossy().into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let m = Member {
                    file: None,
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                };
                if members.insert(path.clone(), m).is_some() {
                    return Err(ImageError::Archive(format!(
                        "{shown}: duplicate member {path:?}"
                    )));
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                links.push((path, entry.header().entry_type(), target));
            }
            _ => {}
        }
    }
    // A member cut short by truncation is caught when it is read; the index only needs its extent.
    let len = std::fs::metadata(file)
        .map_err(ImageError::io(format!("stat {shown}")))?
        .len();
    for (path, m) in &members {
        if m.offset + m.size > len {
            return Err(ImageError::Archive(format!(
                "{shown}: member {path:?} is truncated"
            )));
        }
    }
    for (path, ty, target) in links {
        let target = String::from_utf8_lossy(&target).into_owned();
        let resolved = if ty == tar::EntryType::Symlink {
            let base = Path::new(&path)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&target);
            lexical_normalize(&base)
        } else {
            super::extract::normalize(target.as_bytes())
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        };
        if let Some(m) = resolved.and_then(|r| members.get(&r).cloned()) {
            members.insert(path, m);
        }
    }
    Ok(members)
}

/// Resolves `..` lexically; `None` if the path climbs above the archive root.
fn lexical_normalize(p: &Path) -> Option<String> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop()?;
            }
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    Some(
        out.iter()
            .collect::<PathBuf>()
            .to_string_lossy()
            .into_owned(),
    )
}
