//! The test images are reproducible and have the shape the issue asks for.

mod image_support;

use image_support::busybox_as;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use strata_runtime::image::Digest;
use strata_runtime::image::testimages::{self, ArchiveFormat, BuildOptions};

/// Every member of a tar archive: path → (entry type, bytes).
fn members(archive: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(archive);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let ty = e.header().entry_type();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(path, (ty, data));
    }
    out
}

#[test]
fn busybox_builds_are_byte_identical_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for (format, gzip) in [
        (ArchiveFormat::DockerSave, false),
        (ArchiveFormat::Oci, true),
        (ArchiveFormat::Oci, false),
    ] {
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (pa, ia) = busybox_as(&a, format, gzip);
        let (pb, ib) = busybox_as(&b, format, gzip);
        assert_eq!(
            ia.diff_ids, ib.diff_ids,
            "{format:?} gzip={gzip}: layer digests differ"
        );
        assert_eq!(ia.id, ib.id, "{format:?} gzip={gzip}: image ids differ");
        let (da, db) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        assert_eq!(
            Digest::of(&da),
            Digest::of(&db),
            "{format:?} gzip={gzip}: archives differ"
        );
    }
}

#[test]
fn bigtree_builds_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BuildOptions::default();
    let a = testimages::build_bigtree(&dir.path().join("a.tar"), &opts).unwrap();
    let b = testimages::build_bigtree(&dir.path().join("b.tar"), &opts).unwrap();
    assert_eq!(a.diff_ids, b.diff_ids);
    assert_eq!(a.id, b.id);
    let da = Digest::of(&std::fs::read(dir.path().join("a.tar")).unwrap());
    let db = Digest::of(&std::fs::read(dir.path().join("b.tar")).unwrap());
    assert_eq!(da, db);
    assert!(a.diff_ids.len() >= 3, "bigtree must have at least 3 layers");
    assert!(a.entries >= 5_000, "bigtree has only {} entries", a.entries);
}

#[test]
fn busybox_archive_is_a_docker_save_archive_with_the_issue_layers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, built) = busybox_as(dir.path(), ArchiveFormat::DockerSave, false);
    assert_eq!(built.name, "strata-busybox:latest");
    let outer = members(&std::fs::read(&path).unwrap());

    let manifest: serde_json::Value = serde_json::from_slice(&outer["manifest.json"].1).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "strata-busybox:latest");
    let repos: serde_json::Value = serde_json::from_slice(&outer["repositories"].1).unwrap();
    assert!(repos["strata-busybox"]["latest"].is_string());
    let config_name = manifest[0]["Config"].as_str().unwrap();
    let config_bytes = &outer[config_name].1;
    assert_eq!(
        format!("{}.json", Digest::of(config_bytes).hex()),
        config_name
    );
    let config: serde_json::Value = serde_json::from_slice(config_bytes).unwrap();
    assert_eq!(config["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(config["config"]["WorkingDir"], "/");
    assert!(
        config["config"]["Env"][0]
            .as_str()
            .unwrap()
            .starts_with("PATH=")
    );

    let layers: Vec<_> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| members(&outer[l.as_str().unwrap()].1))
        .collect();
    assert_eq!(layers.len(), 3);
    for (layer, diff) in manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&config["rootfs"]["diff_ids"].as_array().unwrap()[..])
    {
        assert_eq!(
            Digest::of(&outer[layer.as_str().unwrap()].1).as_str(),
            diff.as_str().unwrap()
        );
    }
    // Layer 1: busybox with every applet, users, /tmp.
    let host_busybox = std::fs::read("/bin/busybox").expect("busybox-static must be installed");
    assert_eq!(layers[0]["bin/busybox"].1, host_busybox);
    let applets = std::process::Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        let (ty, _) = &layers[0][applet];
        assert!(
            applet == "bin/busybox" || matches!(ty, tar::EntryType::Link | tar::EntryType::Symlink),
            "applet {applet} is not a link"
        );
    }
    let passwd = String::from_utf8_lossy(&layers[0]["etc/passwd"].1).into_owned();
    assert!(passwd.contains("root:x:0:0:") && passwd.contains("user:x:1000:1000:"));
    for p in ["etc/group", "etc/hosts", "etc/motd", "tmp/", "home/user/"] {
        assert!(layers[0].contains_key(p), "layer 1 lacks {p}");
    }
    // Layer 2: /srv/data with an 8 MiB file, a replaced layer-1 file.
    assert_eq!(layers[1]["srv/data/big.bin"].1.len(), 8 << 20);
    assert!(layers[1].contains_key("etc/os-release") && layers[0].contains_key("etc/os-release"));
    // Layer 3: a whiteout of a layer-1 file and an opaque layer-2 directory with new content.
    assert!(layers[2].contains_key("etc/.wh.motd"));
    assert!(layers[2].contains_key("srv/data/cache/.wh..wh..opq"));
    assert!(layers[1].contains_key("srv/data/cache/old-1"));
    assert!(layers[2].contains_key("srv/data/cache/fresh"));
}

#[test]
fn cli_build_test_writes_the_same_archive_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli.tar");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["image", "build-test", "busybox", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let (lib, _) = busybox_as(dir.path(), ArchiveFormat::DockerSave, false);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(lib).unwrap());
    assert!(Path::new(&out).metadata().unwrap().len() > 8 << 20);
}
