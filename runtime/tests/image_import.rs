//! Importing images: a faithful round trip of every layer, whiteouts in kernel form, the fast path for
//! stored layers, OCI layouts with gzip layers, removal, and the CLI.

mod image_support;

use image_support::{
    DockerArchive, OverlayMount, RawEntry, assert_store_empty, busybox, busybox_as, raw_layer,
    store, tree,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use strata_runtime::image::Digest;
use strata_runtime::image::testimages::{self, ArchiveFormat, BuildOptions, EPOCH};

/// type, mode, uid, gid, mtime, data, link target
type Expected = (tar::EntryType, u32, u64, u64, u64, Vec<u8>, Option<String>);

/// What a layer tar says, entry by entry, in the form the extracted directory must have.
fn expected_from_tar(layer: &[u8]) -> BTreeMap<String, Expected> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(layer);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(
            path,
            (
                h.entry_type(),
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                data,
                link,
            ),
        );
    }
    out
}

/// Checks one extracted layer directory against its tar: same set of paths (whiteouts converted), and
/// per entry the type, mode, owner, mtime, content, symlink target and hard-link identity.
fn assert_layer_matches(dir: &Path, layer_tar: &[u8]) {
    let want = expected_from_tar(layer_tar);
    let got = tree(dir);
    let mut expected_paths: Vec<String> = Vec::new();
    for (path, (ty, mode, uid, gid, mtime, data, link)) in &want {
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parent = Path::new(path)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name == ".wh..wh..opq" {
            let d = &got[&parent];
            assert_eq!(
                d.xattrs.get("trusted.overlay.opaque").map(Vec::as_slice),
                Some(&b"y"[..]),
                "{parent} not opaque"
            );
            continue;
        }
        if let Some(target) = name.strip_prefix(".wh.") {
            let p = if parent.is_empty() {
                target.to_string()
            } else {
                format!("{parent}/{target}")
            };
            let n = &got[&p];
            assert_eq!(
                (n.kind, n.rdev),
                ("char", 0),
                "{p}: whiteout is not a char device 0/0"
            );
            expected_paths.push(p);
            continue;
        }
        let n = got
            .get(path.as_str())
            .unwrap_or_else(|| panic!("{path} missing from {}", dir.display()));
        expected_paths.push(path.clone());
        if *ty == tar::EntryType::Link {
            let target = link.as_deref().unwrap();
            assert_eq!(
                n.inode_of, got[target].inode_of,
                "{path} is not a hard link of {target}"
            );
            continue;
        }
        assert_eq!((n.uid as u64, n.gid as u64), (*uid, *gid), "{path}: owner");
        assert_eq!(n.mtime, (*mtime as i64, 0), "{path}: mtime");
        match ty {
            tar::EntryType::Directory => assert_eq!((n.kind, n.mode), ("dir", *mode), "{path}"),
            tar::EntryType::Regular => {
                assert_eq!((n.kind, n.mode), ("file", *mode), "{path}");
                assert_eq!(
                    n.sha256.as_deref(),
                    Some(Digest::of(data).as_str()),
                    "{path}: content"
                );
            }
            tar::EntryType::Symlink => {
                assert_eq!(n.kind, "symlink", "{path}");
                assert_eq!(n.link, *link, "{path}: target");
            }
            tar::EntryType::Fifo => assert_eq!((n.kind, n.mode), ("fifo", *mode), "{path}"),
            other => panic!("{path}: unexpected type {other:?} in a test image"),
        }
    }
    let mut got_paths: Vec<String> = got.keys().filter(|k| !k.is_empty()).cloned().collect();
    got_paths.sort();
    expected_paths.sort();
    assert_eq!(
        got_paths,
        expected_paths,
        "{}: extra or missing entries",
        dir.display()
    );
}

/// The layer tars of a docker-save archive, bottom first.
fn layer_tars(archive: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(archive).unwrap();
    let mut members = BTreeMap::new();
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut d = Vec::new();
        e.read_to_end(&mut d).unwrap();
        members.insert(p, d);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| members[l.as_str().unwrap()].clone())
        .collect()
}

#[test]
fn busybox_round_trip_keeps_everything_and_converts_whiteouts() {
    let (dir, store) = store();
    let (archive, built) = busybox(dir.path());
    let rec = store.import(&archive, None).unwrap();
    assert_eq!(rec.name, "strata-busybox:latest");
    assert_eq!(rec.id, built.id);
    assert_eq!(
        rec.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
        built.diff_ids
    );
    assert_eq!(rec.config.cmd, vec!["/bin/sh"]);
    assert_eq!(rec.config.working_dir.as_deref(), Some("/"));
    assert!(rec.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert_eq!(store.get("strata-busybox").unwrap(), rec);

    let tars = layer_tars(&archive);
    for (layer, tar) in rec.layers.iter().zip(&tars) {
        assert_layer_matches(&store.layer_dir(layer), tar);
    }

    // Spot checks of what the generic comparison covers, stated plainly.
    let l1 = store.layer_dir(&rec.layers[0]);
    let t1 = tree(&l1);
    assert_eq!(t1["tmp"].mode, 0o1777);
    assert_eq!(t1["root"].mode, 0o700);
    assert_eq!(
        (
            t1["home/user/setuid-tool"].mode,
            t1["home/user/setuid-tool"].uid
        ),
        (0o4755, 1000)
    );
    assert_eq!(t1["sbin/init"].inode_of, "bin/busybox");
    assert_eq!(t1["usr/bin/find"].link.as_deref(), Some("/bin/busybox"));
    assert_eq!(t1["run/strata.fifo"].kind, "fifo");
    assert_eq!(
        t1["usr/share/strata/xattr.txt"].xattrs["user.strata.comment"],
        b"hello from layer 1"
    );
    assert_eq!(
        t1["etc"].mtime,
        (EPOCH as i64, 0),
        "directory mtimes are set after their contents"
    );
    let t3 = tree(&store.layer_dir(&rec.layers[2]));
    assert_eq!(t3["etc/motd"].kind, "char");
    assert!(!t3.contains_key("etc/.wh.motd"));
    assert_eq!(t3["srv/data/cache"].xattrs["trusted.overlay.opaque"], b"y");

    // And the layers mount as a kernel overlay with the expected merged view.
    let m = OverlayMount::new(&store.lower_dirs_top_first(&rec));
    let merged = m.path();
    assert!(
        !merged.join("etc/motd").exists(),
        "whiteout did not hide /etc/motd"
    );
    assert!(
        std::fs::read_to_string(merged.join("etc/os-release"))
            .unwrap()
            .contains("VERSION_ID=2")
    );
    let mut cache: Vec<_> = std::fs::read_dir(merged.join("srv/data/cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    cache.sort();
    assert_eq!(cache, vec!["fresh"], "opaque dir shows lower entries");
    assert_eq!(
        std::fs::metadata(merged.join("srv/data/big.bin"))
            .unwrap()
            .len(),
        8 << 20
    );
}

#[test]
fn hand_made_layer_keeps_capabilities_nanoseconds_long_names_and_hard_links() {
    let (dir, store) = store();
    let long = format!("deep/{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(5);
    h.set_gid(6);
    h.set_mtime(1000);
    h.set_size(0);
    b.append_data(&mut h, "deep/", std::io::empty()).unwrap();
    // security.capability: cap_net_raw+ep in the VFS_CAP_REVISION_2 format.
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    b.append_pax_extensions([
        ("SCHILY.xattr.security.capability", &cap[..]),
        ("mtime", b"1700000000.123456789"),
    ])
    .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(5);
    b.append_data(&mut h, "ping", &b"ping\n"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_uid(1234);
    h.set_gid(4321);
    h.set_mtime(2000);
    h.set_size(3);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o600);
    h.set_size(0);
    b.append_link(&mut h, "hardlink", &long).unwrap();
    let layer = b.into_inner().unwrap();
    let archive = DockerArchive::new(vec![layer]).write(&dir.path().join("a.tar"));
    let rec = store.import(&archive, Some("handmade")).unwrap();
    assert_eq!(rec.name, "handmade:latest");
    assert_eq!(rec.config.entrypoint, vec!["/bin/env"]);
    assert_eq!(rec.config.user.as_deref(), Some("1000:1000"));
    let t = tree(&store.layer_dir(&rec.layers[0]));
    assert_eq!(t["ping"].xattrs["security.capability"], cap.to_vec());
    assert_eq!(t["ping"].mtime, (1_700_000_000, 123_456_789));
    assert_eq!(
        (
            t["deep"].mode,
            t["deep"].uid,
            t["deep"].gid,
            t["deep"].mtime.0
        ),
        (0o750, 5, 6, 1000)
    );
    assert_eq!(
        (t[&long].mode, t[&long].uid, t[&long].gid, t[&long].size),
        (0o600, 1234, 4321, 3)
    );
    assert_eq!(t["hardlink"].inode_of, long);
}

#[test]
fn reimport_is_idempotent_and_does_not_extract_again() {
    let (dir, store) = store();
    let (archive, _) = busybox(dir.path());
    let (first, r1) = store.import_with_report(&archive, None).unwrap();
    assert_eq!(r1.extracted.len(), 3);
    let l1 = store.layer_dir(&first.layers[0]);
    let before = std::fs::metadata(&l1).unwrap();
    let file_before = std::fs::metadata(l1.join("bin/busybox")).unwrap();
    let tree_before = tree(&l1);

    let (second, r2) = store.import_with_report(&archive, None).unwrap();
    assert!(
        r2.extracted.is_empty(),
        "re-import extracted {:?}",
        r2.extracted
    );
    assert_eq!(r2.reused.len(), 3);
    let after = std::fs::metadata(&l1).unwrap();
    let file_after = std::fs::metadata(l1.join("bin/busybox")).unwrap();
    assert_eq!(
        (before.ino(), before.ctime(), before.ctime_nsec()),
        (after.ino(), after.ctime(), after.ctime_nsec())
    );
    assert_eq!(
        (file_before.ino(), file_before.ctime_nsec()),
        (file_after.ino(), file_after.ctime_nsec())
    );
    assert_eq!(tree_before, tree(&l1));
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(
        (first.id, first.layers, first.config),
        (second.id, second.layers, second.config)
    );
    assert!(
        std::fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp not cleaned"
    );
}

#[test]
fn oci_layout_with_gzip_layers_imports_to_the_same_layers() {
    let (dir, store) = store();
    let (oci, built) = busybox_as(dir.path(), ArchiveFormat::Oci, true);
    let (rec, report) = store.import_with_report(&oci, None).unwrap();
    assert_eq!(
        rec.name, "strata-busybox:latest",
        "name from the io.containerd.image.name annotation"
    );
    assert_eq!(report.extracted.len(), 3);
    assert_eq!(
        rec.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>(),
        built.diff_ids
    );

    // The docker-save form of the same image has the same diff_ids: all layers are reused, and the trees
    // equal a separate docker-save import.
    let (docker, _) = busybox(dir.path());
    let (_, r2) = store.import_with_report(&docker, Some("again")).unwrap();
    assert_eq!((r2.extracted.len(), r2.reused.len()), (0, 3));
    let (_other_dir, other) = image_support::store();
    let rec2 = other.import(&docker, None).unwrap();
    for (a, b) in rec.layers.iter().zip(&rec2.layers) {
        let (ta, tb) = (tree(&store.layer_dir(a)), tree(&other.layer_dir(b)));
        // Inode numbers differ between stores; everything else must not.
        assert_eq!(ta.len(), tb.len());
        for (k, na) in &ta {
            let nb = &tb[k];
            if !k.is_empty() {
                assert_eq!(
                    (na.kind, na.mode, na.uid, na.gid, na.mtime, na.size),
                    (nb.kind, nb.mode, nb.uid, nb.gid, nb.mtime, nb.size),
                    "{k}"
                );
            }
            assert_eq!(
                (&na.link, &na.xattrs, &na.sha256, &na.inode_of),
                (&nb.link, &nb.xattrs, &nb.sha256, &nb.inode_of),
                "{k}"
            );
        }
    }
}

#[test]
fn gzip_compressed_docker_save_archive_imports() {
    let (dir, store) = store();
    let (archive, built) = busybox(dir.path());
    let gz = dir.path().join("busybox.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(&archive).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let rec = store.import(&gz, None).unwrap();
    assert_eq!(rec.id, built.id);
    assert!(
        std::fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "scratch copy left behind"
    );
}

#[test]
fn rm_keeps_layers_other_images_share() {
    let (dir, store) = store();
    let (archive, _) = busybox(dir.path());
    let bb = store.import(&archive, None).unwrap();
    // A second image on top of busybox's bottom layer.
    let tars = layer_tars(&archive);
    let extra = raw_layer(&[RawEntry::dir("opt"), RawEntry::file("opt/x", b"x")]);
    let derived =
        DockerArchive::new(vec![tars[0].clone(), extra]).write(&dir.path().join("derived.tar"));
    let (d, report) = store.import_with_report(&derived, None).unwrap();
    assert_eq!((report.reused.len(), report.extracted.len()), (1, 1));
    assert_eq!(store.list().unwrap().len(), 2);

    store.remove("strata-busybox:latest").unwrap();
    assert!(
        store.layer_dir(&bb.layers[0]).is_dir(),
        "shared layer removed"
    );
    assert!(!store.layer_dir(&bb.layers[1]).exists() && !store.layer_dir(&bb.layers[2]).exists());
    assert!(store.get("strata-busybox").is_err());
    store.remove(d.id.hex()).unwrap();
    assert_store_empty(&store);
    assert!(matches!(
        store.remove("nothing"),
        Err(strata_runtime::image::ImageError::NotFound(_))
    ));
}

#[test]
fn bigtree_imports_and_has_the_benchmark_shape() {
    let (dir, store) = image_support::store_on_tmpfs();
    let archive = dir.path().join("bigtree.tar");
    testimages::build_bigtree(&archive, &BuildOptions::default()).unwrap();
    let rec = store.import(&archive, None).unwrap();
    assert_eq!(rec.name, "strata-bigtree:latest");
    assert!(rec.layers.len() >= 3);
    let m = OverlayMount::new(&store.lower_dirs_top_first(&rec));
    let merged = tree(m.path());
    let files = merged.values().filter(|n| n.kind == "file").count();
    let symlinks = merged.values().filter(|n| n.kind == "symlink").count();
    let hardlinked = merged
        .iter()
        .filter(|(k, n)| n.kind == "file" && n.inode_of != **k)
        .count();
    let deepest = merged.keys().map(|k| k.matches('/').count()).max().unwrap();
    let wide = std::fs::read_dir(m.path().join("srv/wide"))
        .unwrap()
        .count();
    assert!(files >= 5_000, "{files} files");
    assert!(
        symlinks >= 100 && hardlinked >= 50,
        "{symlinks} symlinks, {hardlinked} hard links"
    );
    assert!(deepest >= 15, "deepest path has {deepest} levels");
    assert_eq!(wide, 10_000);
    assert!(
        merged.values().any(|n| n.size >= 256 << 10),
        "no large file"
    );
    assert!(
        merged
            .values()
            .filter(|n| n.kind == "file")
            .any(|n| n.size < 512),
        "no small file"
    );
}

#[test]
fn cli_import_ls_inspect_rm() {
    let (dir, _) = store();
    let root = dir.path().join("cli-store");
    let (archive, built) = busybox(dir.path());
    let strata = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--store")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    let out = strata(&["image", "import", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 unpacked"));
    let out = strata(&["image", "import", archive.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 already stored"));

    let ls = String::from_utf8(strata(&["image", "ls"]).stdout).unwrap();
    assert!(ls.lines().next().unwrap().starts_with("NAME"));
    assert!(ls.contains("strata-busybox:latest") && ls.contains(built.id.short()));
    let json: serde_json::Value =
        serde_json::from_slice(&strata(&["image", "ls", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["name"], "strata-busybox:latest");
    let inspect: serde_json::Value =
        serde_json::from_slice(&strata(&["image", "inspect", "strata-busybox"]).stdout).unwrap();
    assert_eq!(inspect["id"], built.id.as_str());
    assert_eq!(inspect["lower_dirs"].as_array().unwrap().len(), 3);
    assert!(
        inspect["lower_dirs"][0]
            .as_str()
            .unwrap()
            .contains(built.diff_ids[2].hex()),
        "top layer first"
    );

    let env_root = Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_STORE", &root)
        .args(["image", "ls", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&env_root.stdout).unwrap(),
        json,
        "STRATA_STORE"
    );

    assert!(
        strata(&["image", "rm", "strata-busybox:latest"])
            .status
            .success()
    );
    let missing = strata(&["image", "inspect", "strata-busybox"]);
    assert_eq!(missing.status.code(), Some(125));
    let err = String::from_utf8(missing.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "error is not one line: {err:?}");
    assert!(err.contains("strata-busybox"));
}

#[test]
fn racing_imports_of_one_archive_both_succeed_and_store_it_once() {
    let (dir, store) = store();
    let (archive, built) = busybox(dir.path());
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| store.import_with_report(&archive, None)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let reports: Vec<_> = results.into_iter().map(|r| r.unwrap().1).collect();
    // The lock serialises them: one unpacked everything, the other found it all stored.
    let mut extracted: Vec<usize> = reports.iter().map(|r| r.extracted.len()).collect();
    extracted.sort();
    assert_eq!(extracted, vec![0, 3]);
    assert_eq!(store.list().unwrap().len(), 1);
    let stored = std::fs::read_dir(store.root().join("layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(stored, built.diff_ids.len());
}

#[test]
fn leftovers_of_an_interrupted_import_are_cleared() {
    let (dir, store) = store();
    // What a killed import leaves: a half-extracted staging dir and a scratch file.
    let stale = store.root().join("tmp/staging-dead");
    std::fs::create_dir_all(stale.join("diff/etc")).unwrap();
    std::fs::write(stale.join("diff/etc/half"), b"x").unwrap();
    std::fs::write(store.root().join("tmp/archive-dead"), b"x").unwrap();
    let (archive, _) = busybox(dir.path());
    store.import(&archive, None).unwrap();
    let left: Vec<_> = std::fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bigtree_from_a_real_tree_keeps_it_and_splits_it_into_layers() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let (dir, store) = image_support::store_on_tmpfs();
    let src = dir.path().join("rootfs");
    for d in ["etc", "usr/bin", "usr/share/doc/pkg", "var/lib/dpkg", "dev"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("etc/hostname"), b"tree\n").unwrap();
    std::fs::write(src.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::hard_link(src.join("usr/bin/tool"), src.join("usr/bin/tool2")).unwrap();
    // A hard link across the layer split becomes two files.
    std::fs::hard_link(src.join("usr/bin/tool"), src.join("usr/share/doc/pkg/tool")).unwrap();
    std::fs::write(src.join("usr/share/doc/pkg/README"), b"docs").unwrap();
    nix::unistd::chown(
        &src.join("usr/share/doc/pkg/README"),
        Some(1000.into()),
        Some(100.into()),
    )
    .unwrap();
    xattr::set(src.join("usr/share/doc/pkg/README"), "user.note", b"kept").unwrap();
    std::fs::write(src.join("var/lib/dpkg/status"), b"Package: x\n").unwrap();
    symlink("../usr/bin/tool", src.join("etc/tool-link")).unwrap();
    nix::unistd::mkfifo(
        &src.join("var/lib/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &src.join("dev/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let t = nix::sys::time::TimeSpec::new(1_600_000_000, 0);
    for p in [
        "etc/hostname",
        "usr/share/doc/pkg/README",
        "var/lib/dpkg/status",
    ] {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &src.join(p),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    let opts = BuildOptions::default();
    let a = testimages::build_bigtree_from_dir(&src, &dir.path().join("a.tar"), &opts).unwrap();
    let b = testimages::build_bigtree_from_dir(&src, &dir.path().join("b.tar"), &opts).unwrap();
    assert_eq!(a.diff_ids, b.diff_ids, "same tree, different layers");
    let rec = store.import(&dir.path().join("a.tar"), None).unwrap();
    assert_eq!(rec.layers.len(), 3);
    let layer2 = tree(&store.layer_dir(&rec.layers[1]));
    assert!(layer2.contains_key("usr/share/doc/pkg/README") && !layer2.contains_key("etc"));

    let m = OverlayMount::new(&store.lower_dirs_top_first(&rec));
    let merged = tree(m.path());
    let source = tree(&src);
    for (path, want) in &source {
        if path.is_empty() || path == "dev/null" {
            continue;
        }
        let got = merged.get(path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(
            (
                got.kind,
                got.mode,
                got.uid,
                got.gid,
                got.size,
                &got.link,
                &got.sha256,
                &got.xattrs
            ),
            (
                want.kind,
                want.mode,
                want.uid,
                want.gid,
                want.size,
                &want.link,
                &want.sha256,
                &want.xattrs
            ),
            "{path}"
        );
        if want.kind != "dir" {
            assert_eq!(got.mtime.0, want.mtime.0, "{path}: mtime");
        }
    }
    assert!(
        !merged.contains_key("dev/null"),
        "device node copied into the image"
    );
    assert_eq!(merged["usr/bin/tool2"].inode_of, "usr/bin/tool");
    assert_eq!(
        std::fs::read_dir(m.path().join("srv/wide"))
            .unwrap()
            .count(),
        10_000
    );
}

#[test]
fn unpacked_layouts_import_from_a_directory() {
    let (dir, store) = store();
    for (format, gzip) in [
        (ArchiveFormat::Oci, true),
        (ArchiveFormat::DockerSave, false),
    ] {
        let (archive, built) = busybox_as(dir.path(), format, gzip);
        let unpacked = dir.path().join(format!("unpacked-{format:?}"));
        std::fs::create_dir(&unpacked).unwrap();
        tar::Archive::new(std::fs::File::open(&archive).unwrap())
            .unpack(&unpacked)
            .unwrap();
        let rec = store
            .import(&unpacked, Some(&format!("{format:?}").to_lowercase()))
            .unwrap();
        assert_eq!(rec.id, built.id);
        assert_eq!(rec.layers.len(), 3);
    }
}

#[test]
fn cli_imports_a_gzip_stream_from_stdin() {
    let (dir, _) = store();
    let (archive, built) = busybox(dir.path());
    let gz = dir.path().join("busybox.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(&archive).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--store")
        .arg(dir.path().join("stdin-store"))
        .args(["image", "import", "-", "--name", "from-stdin"])
        .stdin(std::fs::File::open(&gz).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("from-stdin:latest") && stdout.contains(built.id.as_str()),
        "{stdout}"
    );
}

#[test]
fn user_xattrs_on_symlinks_are_dropped_not_fatal() {
    // Linux cannot store user.* xattrs on symlinks; such an entry must not fail the import.
    let (dir, store) = store();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.note", &b"x"[..])])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_size(0);
    b.append_link(&mut h, "s", "target").unwrap();
    let archive =
        DockerArchive::new(vec![b.into_inner().unwrap()]).write(&dir.path().join("a.tar"));
    let rec = store.import(&archive, None).unwrap();
    let t = tree(&store.layer_dir(&rec.layers[0]));
    assert_eq!(t["s"].link.as_deref(), Some("target"));
}
