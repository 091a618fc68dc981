//! Hostile archives: each is refused with a one-line error naming the entry, and leaves nothing behind.

mod image_support;

use image_support::{DockerArchive, RawEntry, assert_store_empty, busybox_as, raw_layer, store};
use std::path::Path;
use std::process::Command;
use strata_runtime::image::testimages::ArchiveFormat;
use strata_runtime::image::{Digest, ImageError};
use tar::EntryType;

/// Imports `archive` into a fresh store, expects failure, checks the store is untouched and the message
/// is one line containing every string in `expect`.
fn rejected(archive: &Path, expect: &[&str]) -> ImageError {
    let (_dir, store) = store();
    let err = store
        .import(archive, None)
        .expect_err("hostile archive was imported");
    let msg = err.to_string();
    assert_eq!(msg.lines().count(), 1, "error is not one line: {msg:?}");
    for e in expect {
        assert!(msg.contains(e), "error {msg:?} does not mention {e:?}");
    }
    assert_store_empty(&store);
    err
}

/// A docker-save archive with a good first layer and `entries` as the second, so a failure must also
/// discard the good layer.
fn with_layer(dir: &Path, name: &str, entries: &[RawEntry]) -> std::path::PathBuf {
    let good = raw_layer(&[RawEntry::dir("ok"), RawEntry::file("ok/file", b"fine")]);
    DockerArchive::new(vec![good, raw_layer(entries)]).write(&dir.join(format!("{name}.tar")))
}

#[test]
fn dotdot_components_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("escaped");
    for (i, name) in [
        "../escaped",
        "a/../../escaped",
        "ok2/../../../../../../tmp/escaped",
    ]
    .iter()
    .enumerate()
    {
        let a = with_layer(
            d.path(),
            &format!("dotdot{i}"),
            &[RawEntry::file(name, b"pwned")],
        );
        rejected(&a, &[name, ".."]);
    }
    assert!(!outside.exists());
}

#[test]
fn absolute_paths_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("abs-target");
    let name = target.to_string_lossy().into_owned();
    let a = with_layer(d.path(), "abs", &[RawEntry::file(&name, b"pwned")]);
    rejected(&a, &[&name, "absolute"]);
    assert!(!target.exists());
}

#[test]
fn symlink_parent_escapes_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let abs = outside.to_string_lossy().into_owned();
    for (i, target) in [abs.as_str(), "../../../../../../../../..", "/"]
        .iter()
        .enumerate()
    {
        let a = with_layer(
            d.path(),
            &format!("symlink{i}"),
            &[
                RawEntry::symlink("link", target),
                RawEntry::file("link/pwned", b"pwned"),
            ],
        );
        rejected(&a, &["link/pwned", "symlink"]);
    }
    // A symlink deeper in the path, and a directory entry through it.
    let a = with_layer(
        d.path(),
        "symlink-deep",
        &[
            RawEntry::dir("a"),
            RawEntry::symlink("a/b", &abs),
            RawEntry::dir("a/b/c"),
        ],
    );
    rejected(&a, &["a/b/c", "symlink"]);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside"
    );
}

#[test]
fn links_through_symlinks_never_reach_the_host() {
    // A hard link to a symlink links the symlink itself, not what it points at.
    let (dir, store) = store();
    let a = with_layer(
        dir.path(),
        "link-to-symlink",
        &[
            RawEntry::symlink("s", "/etc/shadow"),
            RawEntry::hardlink("h", "s"),
        ],
    );
    let rec = store.import(&a, None).unwrap();
    let h = store.layer_dir(&rec.layers[1]).join("h");
    let md = std::fs::symlink_metadata(&h).unwrap();
    assert!(md.file_type().is_symlink(), "h is not the symlink itself");
    assert_eq!(std::fs::read_link(&h).unwrap(), Path::new("/etc/shadow"));
}

#[test]
fn hard_links_outside_or_to_nothing_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 4] = [
        ("../../../../etc/passwd", &["evil", ".."]),
        ("/etc/passwd", &["evil", "absolute"]),
        ("not-there", &["evil", "not-there", "not an earlier entry"]),
        ("ok", &["evil", "directory"]),
    ];
    for (i, (target, expect)) in cases.iter().enumerate() {
        let a = with_layer(
            d.path(),
            &format!("hardlink{i}"),
            &[RawEntry::dir("ok"), RawEntry::hardlink("evil", target)],
        );
        rejected(&a, expect);
    }
    // A hard link to an entry of a lower layer is also "missing" in this layer.
    let a = with_layer(
        d.path(),
        "hardlink-lower",
        &[RawEntry::hardlink("evil", "ok/file")],
    );
    rejected(&a, &["evil", "ok/file"]);
}

#[test]
fn device_nodes_other_than_whiteouts_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let a = with_layer(
        d.path(),
        "chr",
        &[RawEntry::device("dev-null", EntryType::Char, 1, 3)],
    );
    rejected(&a, &["dev-null", "device node c 1:3"]);
    let a = with_layer(
        d.path(),
        "blk",
        &[RawEntry::device("disk", EntryType::Block, 8, 0)],
    );
    rejected(&a, &["disk", "block device"]);
    // A char 0/0 is a kernel-form whiteout and is fine.
    let (_dir, store) = store();
    let a = with_layer(
        d.path(),
        "wh",
        &[RawEntry::device("gone", EntryType::Char, 0, 0)],
    );
    store.import(&a, None).unwrap();
}

#[test]
fn duplicate_entries_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        (
            "file",
            vec![RawEntry::file("x", b"1"), RawEntry::file("x", b"2")],
        ),
        ("dir", vec![RawEntry::dir("x"), RawEntry::dir("x/")]),
        (
            "kind",
            vec![RawEntry::file("x", b"1"), RawEntry::symlink("x", "y")],
        ),
        (
            "whiteout",
            vec![RawEntry::file("x", b"1"), RawEntry::file(".wh.x", b"")],
        ),
        (
            "opaque",
            vec![
                RawEntry::dir("x"),
                RawEntry::file("x/.wh..wh..opq", b""),
                RawEntry::file("x/.wh..wh..opq", b""),
            ],
        ),
        (
            "dotslash",
            vec![RawEntry::file("./x", b"1"), RawEntry::file("x", b"2")],
        ),
    ];
    for (name, entries) in cases {
        let a = with_layer(d.path(), &format!("dup-{name}"), &entries);
        rejected(&a, &["duplicate entry"]);
    }
}

#[test]
fn truncated_archives_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    // A layer cut in the middle of a file's data, with the diff_id of the whole layer.
    let whole = raw_layer(&[RawEntry::file("big", &vec![7u8; 100_000])]);
    let cut = whole[..60_000].to_vec();
    let mut arch = DockerArchive::new(vec![cut]);
    arch.diff_ids = Some(vec![Digest::of(&whole).to_string()]);
    let a = arch.write(&d.path().join("cut-layer.tar"));
    rejected(&a, &["big", "truncated"]);

    // An outer archive cut short.
    let (full, _) = busybox_as(d.path(), ArchiveFormat::DockerSave, false);
    let bytes = std::fs::read(&full).unwrap();
    let short = d.path().join("short.tar");
    // Not on a 512-byte block boundary, so the cut always lands inside a header or a member.
    std::fs::write(&short, &bytes[..bytes.len() / 2 / 512 * 512 + 100]).unwrap();
    rejected(&short, &["truncated"]);
}

#[test]
fn manifest_naming_missing_blobs_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let mut arch = DockerArchive::new(vec![raw_layer(&[RawEntry::file("x", b"1")])]);
    arch.layer_paths = Some(vec!["nowhere/layer.tar".into()]);
    let a = arch.write(&d.path().join("missing.tar"));
    rejected(&a, &["nowhere/layer.tar", "missing"]);

    // OCI layout: remove one layer blob.
    let (oci, built) = busybox_as(d.path(), ArchiveFormat::Oci, true);
    let stripped = d.path().join("stripped.tar");
    let victim = {
        // The compressed blob of layer 2 is whichever blob is neither config, manifest nor another layer;
        // find it through index.json → manifest.
        let members = outer_members(&oci);
        let index: serde_json::Value = serde_json::from_slice(&members["index.json"]).unwrap();
        let m = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&members[&blob_path(m)]).unwrap();
        blob_path(manifest["layers"][1]["digest"].as_str().unwrap())
    };
    rewrite(
        &oci,
        &stripped,
        |p, data| if p == victim { None } else { Some(data) },
    );
    assert_eq!(built.diff_ids.len(), 3);
    rejected(&stripped, &[&victim, "missing"]);
}

#[test]
fn digest_mismatches_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    // A layer whose content does not match the config's diff_id.
    let mut arch = DockerArchive::new(vec![raw_layer(&[RawEntry::file("x", b"1")])]);
    arch.diff_ids = Some(vec![Digest::of(b"something else").to_string()]);
    rejected(
        &arch.write(&d.path().join("diff.tar")),
        &["layer0/layer.tar", "digest mismatch"],
    );

    // A config that does not match its file name.
    let mut arch = DockerArchive::new(vec![raw_layer(&[RawEntry::file("x", b"1")])]);
    arch.tamper_config = true;
    rejected(
        &arch.write(&d.path().join("config.tar")),
        &["config", "digest mismatch"],
    );

    // OCI: a layer blob changed after its digest was recorded (same size, one byte flipped).
    let (oci, _) = busybox_as(d.path(), ArchiveFormat::Oci, false);
    let members = outer_members(&oci);
    let index: serde_json::Value = serde_json::from_slice(&members["index.json"]).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &members[&blob_path(index["manifests"][0]["digest"].as_str().unwrap())],
    )
    .unwrap();
    let victim = blob_path(manifest["layers"][2]["digest"].as_str().unwrap());
    let tampered = d.path().join("tampered.tar");
    rewrite(&oci, &tampered, |p, mut data| {
        if p == victim {
            // Inside the tar's trailing zero blocks, so the tar still parses and only digests catch it.
            let n = data.len() - 10;
            data[n] ^= 1;
        }
        Some(data)
    });
    rejected(&tampered, &["digest mismatch"]);
}

#[test]
fn cli_reports_hostile_archives_in_one_line_with_status_125() {
    image_support::require_root();
    let d = tempfile::tempdir().unwrap();
    let a = with_layer(d.path(), "cli", &[RawEntry::file("../escaped", b"x")]);
    let root = d.path().join("store");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--store")
        .arg(&root)
        .args(["image", "import"])
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("../escaped"), "{err}");
    assert_store_empty(&strata_runtime::image::Store::open(&root).unwrap());
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap())
}

fn outer_members(archive: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let bytes = std::fs::read(archive).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != EntryType::Regular {
            continue;
        }
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(p, data);
    }
    out
}

/// Copies an archive's regular members through `f` (None drops a member).
fn rewrite(src: &Path, dst: &Path, f: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in outer_members(src) {
        if let Some(data) = f(&p, data) {
            image_support::add(&mut b, &p, &data);
        }
    }
    std::fs::write(dst, b.into_inner().unwrap()).unwrap();
}
