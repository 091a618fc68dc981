//! `strata image build-test bigtree --from-dir DIR`: the bigtree image made from a real tree, e.g. a
//! `debootstrap --variant=minbase` Debian, instead of the synthetic generator.
//!
//! layer 1  everything outside usr/share and var
//! layer 2  usr/share
//! layer 3  var, plus srv/wide with 10,000 entries (the benchmark's readdir case)
//!
//! Modes, owners, mtimes, symlinks, hard links (within a layer) and xattrs come from the tree; device
//! nodes and sockets are left out (images must not carry them). The same tree gives the same archive.

use super::bigtree::{NAME, WIDE_DIR_ENTRIES};
use super::{BuildOptions, BuiltImage, EPOCH, ImageSpec, LayerBuilder, Rng, write_image};
use crate::image::ImageError;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Which of the three layers a path goes to.
fn layer_of(rel: &str) -> usize {
    let under = |d: &str| rel == d || rel.starts_with(&format!("{d}/"));
    if under("usr/share") {
        1
    } else if under("var") {
        2
    } else {
        0
    }
}

/// Builds bigtree from the tree at `src`.
pub fn build_bigtree_from_dir(
    src: &Path,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuiltImage, ImageError> {
    let err = |p: &Path, e: std::io::Error| ImageError::TestImage(format!("{}: {e}", p.display()));
    // Sorted by path string, as tar entries must be (a hard link's target comes first).
    let mut entries: BTreeMap<String, (PathBuf, Metadata)> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(|e| err(&dir, e))? {
            let e = e.map_err(|e| err(&dir, e))?;
            let path = e.path();
            let md = fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
            let rel = path
                .strip_prefix(src)
                .expect("below src")
                .to_str()
                .ok_or_else(|| ImageError::TestImage(format!("{}: not UTF-8", path.display())))?
                .to_string();
            if md.is_dir() {
                stack.push(path.clone());
            }
            entries.insert(rel, (path, md));
        }
    }
    if entries.is_empty() {
        return Err(ImageError::TestImage(format!(
            "{}: empty or not a directory",
            src.display()
        )));
    }

    let mut layers = [
        LayerBuilder::new(EPOCH),
        LayerBuilder::new(EPOCH),
        LayerBuilder::new(EPOCH),
    ];
    let mut first_link: HashMap<(usize, u64, u64), String> = HashMap::new();
    for (rel, (path, md)) in &entries {
        let l = layer_of(rel);
        add_parents(&mut layers[l], src, rel)?;
        let layer = &mut layers[l];
        let ft = md.file_type();
        let mode = md.mode() & 0o7777;
        if ft.is_dir() {
            layer.dir(rel, mode);
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| err(path, e))?;
            layer.symlink(rel, &target.to_string_lossy());
        } else if ft.is_file() {
            let key = (l, md.dev(), md.ino());
            match first_link.get(&key) {
                Some(target) if md.nlink() > 1 => {
                    layer.hardlink(rel, target);
                    continue;
                }
                _ => {
                    if md.nlink() > 1 {
                        first_link.insert(key, rel.clone());
                    }
                    layer.file(rel, mode, fs::read(path).map_err(|e| err(path, e))?);
                }
            }
        } else if ft.is_fifo() {
            layer.fifo(rel, mode);
        } else {
            // Device nodes and sockets: not allowed in images.
            continue;
        }
        layer.set_owner_time(
            rel,
            md.uid().into(),
            md.gid().into(),
            md.mtime().max(0) as u64,
        );
        if let Ok(names) = xattr::list(path) {
            let mut names: Vec<_> = names.collect();
            names.sort();
            for n in names {
                let key = n.to_string_lossy().into_owned();
                if key.starts_with("trusted.overlay.") {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(path, &n) {
                    layer.xattr(rel, &key, &v);
                }
            }
        }
    }

    let mut rng = Rng::new(0x0046_524f_4d44_4952);
    let top = &mut layers[2];
    add_parents(top, src, "srv/wide/x")?;
    if !top.contains("srv/wide") {
        top.dir("srv/wide", 0o755);
    }
    for i in 0..WIDE_DIR_ENTRIES {
        top.file(
            &format!("srv/wide/entry-{i:05}"),
            0o644,
            rng.text_sized(0, 128),
        );
    }

    let entries = layers.iter().map(|l| l.len() as u64).sum();
    let [l1, l2, l3] = layers;
    let spec = ImageSpec {
        name: NAME.to_string(),
        layers: vec![l1.finish()?, l2.finish()?, l3.finish()?],
        layer_comments: vec![
            format!(
                "strata image build-test bigtree --from-dir {}: layer 1 (all but usr/share, var)",
                src.display()
            ),
            "layer 2 (usr/share)".into(),
            "layer 3 (var, srv/wide with 10,000 entries)".into(),
        ],
        config: json!({
            "Cmd": ["/bin/sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        }),
        entries,
    };
    write_image(spec, out, opts)
}

/// Adds the parent directories of `rel` to `layer` with their metadata from the tree (or 0755 root:root
/// when the tree lacks them), so that each layer's directories look like the tree's.
fn add_parents(layer: &mut LayerBuilder, src: &Path, rel: &str) -> Result<(), ImageError> {
    let mut sofar = String::new();
    let comps: Vec<&str> = rel.split('/').collect();
    for comp in &comps[..comps.len() - 1] {
        if !sofar.is_empty() {
            sofar.push('/');
        }
        sofar.push_str(comp);
        if layer.contains(&sofar) {
            continue;
        }
        match fs::symlink_metadata(src.join(&sofar)) {
            Ok(md) if md.is_dir() => {
                layer.dir(&sofar, md.mode() & 0o7777);
                layer.set_owner_time(
                    &sofar,
                    md.uid().into(),
                    md.gid().into(),
                    md.mtime().max(0) as u64,
                );
            }
            _ => layer.dir(&sofar, 0o755),
        }
    }
    Ok(())
}
