//! The content-addressed layer store and the image records that point into it.
//!
//! ```text
//! <root>/lock                                  flock: one import or removal at a time
//! <root>/layers/sha256/<diff-id hex>/diff/     the layer tree, whiteouts in kernel form
//! <root>/layers/sha256/<diff-id hex>/layer.json
//! <root>/images/<encoded name>.json            one ImageRecord per name, written atomically
//! <root>/tmp/                                  staging dirs and scratch files (cleared under the lock)
//! ```
//! A layer directory exists only once it is complete: layers are extracted into `tmp/staging-*`,
//! verified, and renamed into place; a removed layer is renamed away before it is deleted.

use super::archive::ImageSource;
use super::extract::{ExtractStats, extract_layer};
use super::{Digest, ImageError};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The store's location unless `--store` or `STRATA_STORE` says otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/strata";

/// One layer of an image, identified by the digest of its uncompressed tar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub diff_id: Digest,
    /// Size of the uncompressed layer tar in bytes.
    pub size: u64,
}

/// The parts of the image config a runtime needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An imported image: its name, id, layers bottom-first and its config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    /// sha256 of the image config blob (what Docker calls the image id).
    pub id: Digest,
    /// Bottom-most layer first.
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    /// The image's creation time as its config states it (RFC 3339).
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    /// When this record was written, seconds since the epoch.
    pub imported_at: u64,
}

/// What one import did, beyond the record it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Layers unpacked by this import.
    pub extracted: Vec<Digest>,
    /// Layers that were already in the store and were not read again.
    pub reused: Vec<Digest>,
    pub stats: ExtractStats,
}

#[derive(Serialize, Deserialize)]
struct LayerMeta {
    diff_id: Digest,
    size: u64,
    entries: u64,
    file_bytes: u64,
}

/// A layer store rooted at one directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `$STRATA_STORE` if set and non-empty, else [`DEFAULT_ROOT`].
    pub fn default_root() -> PathBuf {
        match std::env::var_os("STRATA_STORE") {
            Some(r) if !r.is_empty() => PathBuf::from(r),
            _ => PathBuf::from(DEFAULT_ROOT),
        }
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [store.layers_root(), store.images_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir)
                .map_err(ImageError::io(format!("create {}", dir.display())))?;
        }
        // Layers hold images' setuid binaries and private files with their image owners: host users
        // must not reach them through the store (containers reach them through their mounts).
        for dir in [store.root.join("layers"), store.tmp_dir()] {
            // Only when it differs: a chmod dirties the inode (an ext4 journal write on every run).
            let private =
                fs::metadata(&dir).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o700);
            if private {
                continue;
            }
            if let Err(e) = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)) {
                // A store opened read-only by a non-owner still lists and inspects images.
                if e.kind() != std::io::ErrorKind::PermissionDenied {
                    return Err(ImageError::io(format!("chmod {}", dir.display()))(e));
                }
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layers_root(&self) -> PathBuf {
        self.root.join("layers/sha256")
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn layer_home(&self, diff_id: &Digest) -> PathBuf {
        self.layers_root().join(diff_id.hex())
    }

    /// The directory holding the layer's tree: what goes into an overlay `lowerdir=`.
    pub fn layer_dir(&self, layer: &Layer) -> PathBuf {
        self.layer_home(&layer.diff_id).join("diff")
    }

    /// Whether a layer is fully stored.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_home(diff_id).join("layer.json").is_file()
    }

    /// The image's layer dirs top-most first, as `mount -t overlay -o lowerdir=` wants them.
    pub fn lower_dirs_top_first(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .rev()
            .map(|l| self.layer_dir(l))
            .collect()
    }

    /// Takes the store-wide lock, waiting for a concurrent import or removal to finish.
    fn lock(&self) -> Result<Flock<File>, ImageError> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io(format!("open {}", path.display())))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::Io {
            context: format!("lock {}", path.display()),
            source: e.into(),
        })
    }

    /// Removes leftovers of interrupted imports. Only called with the lock held, so nothing is in use.
    fn clear_tmp(&self) -> Result<(), ImageError> {
        let tmp = self.tmp_dir();
        for e in fs::read_dir(&tmp).map_err(ImageError::io(format!("read {}", tmp.display())))? {
            let p = e
                .map_err(ImageError::io(format!("read {}", tmp.display())))?
                .path();
            let r = if p.is_dir() && !p.is_symlink() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(ImageError::io(format!("remove {}", p.display())))?;
        }
        Ok(())
    }

    /// Imports a `docker save` or OCI-layout archive. The image is named `name`, else by the archive.
    pub fn import(&self, archive: &Path, name: Option<&str>) -> Result<ImageRecord, ImageError> {
        self.import_with_report(archive, name).map(|(r, _)| r)
    }

    /// Like [`import`](Store::import), also saying which layers were unpacked and which were reused.
    pub fn import_with_report(
        &self,
        archive: &Path,
        name: Option<&str>,
    ) -> Result<(ImageRecord, ImportReport), ImageError> {
        let _lock = self.lock()?;
        self.clear_tmp()?;
        let src = ImageSource::open(archive, &self.tmp_dir())?;
        let name = match name {
            Some(n) => normalize_name(n)?,
            None => match src.names.first() {
                Some(n) => normalize_name(n)?,
                None => {
                    return Err(ImageError::Archive(format!(
                        "{}: the archive does not name the image; pass --name",
                        archive.display()
                    )));
                }
            },
        };

        // Stage every missing layer first; only when all are verified does anything enter the store.
        let mut report = ImportReport::default();
        let mut staged: Vec<(Digest, tempfile::TempDir)> = Vec::new();
        let mut layers = Vec::new();
        for (i, blob) in src.layers.iter().enumerate() {
            // A layer repeated within the image is stored (and listed) once per occurrence, unpacked once.
            if let Some(l) = layers
                .iter()
                .find(|l: &&Layer| l.diff_id == blob.diff_id)
                .cloned()
            {
                layers.push(l);
                continue;
            }
            if let Some(meta) = self.read_layer_meta(&blob.diff_id) {
                report.reused.push(blob.diff_id.clone());
                layers.push(Layer {
                    diff_id: blob.diff_id.clone(),
                    size: meta.size,
                });
                continue;
            }
            let staging = tempfile::Builder::new()
                .prefix("staging-")
                .tempdir_in(self.tmp_dir())
                .map_err(ImageError::io("create staging dir"))?;
            let diff = staging.path().join("diff");
            fs::create_dir(&diff).map_err(ImageError::io(format!("create {}", diff.display())))?;
            let mut reader = src.layer_reader(i)?;
            let stats = extract_layer(&mut reader, &diff, blob.diff_id.short())?;
            let size = reader.finish()?;
            let meta = LayerMeta {
                diff_id: blob.diff_id.clone(),
                size,
                entries: stats.entries,
                file_bytes: stats.file_bytes,
            };
            write_json(&staging.path().join("layer.json"), &meta)?;
            report.stats.entries += stats.entries;
            report.stats.file_bytes += stats.file_bytes;
            report.stats.whiteouts += stats.whiteouts;
            report.stats.opaque_dirs += stats.opaque_dirs;
            report.extracted.push(blob.diff_id.clone());
            layers.push(Layer {
                diff_id: blob.diff_id.clone(),
                size,
            });
            staged.push((blob.diff_id.clone(), staging));
        }
        if !staged.is_empty() {
            // One flush of the store's filesystem before the renames, so a crash cannot leave a layer
            // that looks complete with files whose data never reached the disk.
            let tmp = File::open(self.tmp_dir()).map_err(ImageError::io("open store tmp"))?;
            nix::unistd::syncfs(&tmp).map_err(|e| ImageError::io("syncfs")(e.into()))?;
        }
        for (diff_id, staging) in staged {
            let dst = self.layer_home(&diff_id);
            let path = staging.keep();
            fs::rename(&path, &dst)
                .map_err(ImageError::io(format!("store layer {}", dst.display())))?;
        }

        let cfg = src.config.config().clone().unwrap_or_default();
        let record = ImageRecord {
            name,
            id: src.id.clone(),
            layers,
            config: ImageConfig {
                entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
                cmd: cfg.cmd().clone().unwrap_or_default(),
                env: cfg.env().clone().unwrap_or_default(),
                working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
                user: cfg.user().clone().filter(|u| !u.is_empty()),
            },
            created: src.config.created().clone(),
            architecture: src.config.architecture().to_string(),
            os: src.config.os().to_string(),
            imported_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        self.write_record(&record)?;
        // A name that pointed at another image before may have left layers nobody uses.
        self.collect_garbage()?;
        Ok((record, report))
    }

    fn read_layer_meta(&self, diff_id: &Digest) -> Option<LayerMeta> {
        let bytes = fs::read(self.layer_home(diff_id).join("layer.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.images_dir()
            .join(format!("{}.json", encode_name(name)))
    }

    fn write_record(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let mut tmp = tempfile::Builder::new()
            .prefix("record-")
            .tempfile_in(self.tmp_dir())
            .map_err(ImageError::io("create record"))?;
        serde_json::to_writer_pretty(&mut tmp, record)
            .map_err(|e| ImageError::io("write record")(e.into()))?;
        tmp.write_all(b"\n")
            .map_err(ImageError::io("write record"))?;
        tmp.as_file()
            .sync_all()
            .map_err(ImageError::io("sync record"))?;
        let dst = self.record_path(&record.name);
        tmp.persist(&dst)
            .map_err(|e| ImageError::io(format!("write {}", dst.display()))(e.error))?;
        Ok(())
    }

    /// All images, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.images_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(ImageError::io(format!("read {}", dir.display())))? {
            let p = e
                .map_err(ImageError::io(format!("read {}", dir.display())))?
                .path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(read_record(&p)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The image named `name` (a missing tag means `:latest`), or whose id starts with `name`
    /// (`sha256:` optional, at least 4 hex digits).
    pub fn get(&self, name: &str) -> Result<ImageRecord, ImageError> {
        if let Ok(n) = normalize_name(name) {
            let p = self.record_path(&n);
            if p.is_file() {
                return read_record(&p);
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        if prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits: Vec<_> = self
                .list()?
                .into_iter()
                .filter(|r| r.id.hex().starts_with(&prefix.to_ascii_lowercase()))
                .collect();
            hits.dedup_by(|a, b| a.id == b.id);
            match hits.len() {
                0 => {}
                1 => return Ok(hits.remove(0)),
                _ => return Err(ImageError::Ambiguous(name.to_string())),
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// Removes the image record and every layer no other image uses. Returns the removed record.
    pub fn remove(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let _lock = self.lock()?;
        let record = self.get(name)?;
        let p = self.record_path(&record.name);
        fs::remove_file(&p).map_err(ImageError::io(format!("remove {}", p.display())))?;
        self.collect_garbage()?;
        Ok(record)
    }

    /// Deletes layers that no record references. Called with the lock held.
    fn collect_garbage(&self) -> Result<(), ImageError> {
        let used: HashSet<String> = self
            .list()?
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| l.diff_id.hex().to_string()))
            .collect();
        let layers = self.layers_root();
        for e in
            fs::read_dir(&layers).map_err(ImageError::io(format!("read {}", layers.display())))?
        {
            let e = e.map_err(ImageError::io(format!("read {}", layers.display())))?;
            let hex = e.file_name().to_string_lossy().into_owned();
            if used.contains(&hex) {
                continue;
            }
            // Rename first so a half-deleted layer never looks like a stored one.
            let trash = self.tmp_dir().join(format!("trash-{hex}"));
            fs::rename(e.path(), &trash).map_err(ImageError::io(format!("remove layer {hex}")))?;
            fs::remove_dir_all(&trash)
                .map_err(ImageError::io(format!("remove {}", trash.display())))?;
        }
        Ok(())
    }
}

fn read_record(p: &Path) -> Result<ImageRecord, ImageError> {
    let bytes = fs::read(p).map_err(ImageError::io(format!("read {}", p.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| ImageError::Store {
        path: p.to_path_buf(),
        reason: format!("corrupt image record: {e}"),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ImageError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| ImageError::io("encode json")(e.into()))?;
    fs::write(path, bytes).map_err(ImageError::io(format!("write {}", path.display())))
}

/// Checks an image name and gives it the `:latest` tag if it has none.
pub fn normalize_name(name: &str) -> Result<String, ImageError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['-', '.', '/', ':'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@+".contains(&b));
    if !ok {
        return Err(ImageError::InvalidName(name.to_string()));
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}:latest"))
    }
}

/// A file name for an image name: unreserved characters stay, everything else becomes `%XX`, so that two
/// names never share a file.
fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_makes_layers_and_tmp_private_again() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let store = Store::open(dir.path()).unwrap();
        let (layers, tmp) = (dir.path().join("layers"), store.tmp_dir());
        assert_eq!((mode(&layers), mode(&tmp)), (0o700, 0o700));
        for d in [&layers, &tmp] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Store::open(dir.path()).unwrap();
        assert_eq!((mode(&layers), mode(&tmp)), (0o700, 0o700));
    }

    #[test]
    fn names_get_latest_and_encode_uniquely() {
        assert_eq!(normalize_name("busybox").unwrap(), "busybox:latest");
        assert_eq!(
            normalize_name("localhost:5000/x").unwrap(),
            "localhost:5000/x:latest"
        );
        assert_eq!(normalize_name("a/b:v1").unwrap(), "a/b:v1");
        assert!(normalize_name("../x").is_err());
        assert!(normalize_name("a b").is_err());
        assert_ne!(encode_name("a_b:latest"), encode_name("a:b_latest"));
        assert_eq!(
            encode_name("strata-busybox:latest"),
            "strata-busybox%3Alatest"
        );
    }
}
