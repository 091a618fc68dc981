//! The library contract: mount / open_and_mount_fuse + serve_fd / stop / join / stats, and
//! passthrough with its fallback.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;
use strata_overlayfs::{Config, FuseMountOptions};

fn layers() -> (tempfile::TempDir, Config, PathBuf) {
    require_root_and_fuse();
    let dir = tempfile::Builder::new()
        .prefix(&unique("strata-ovl-api"))
        .tempdir()
        .unwrap();
    for d in ["l1", "l2", "u", "w", "m"] {
        fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    write(&dir.path().join("l2/data"), &"x".repeat(1 << 20));
    write(&dir.path().join("l1/small"), "small");
    let cfg = Config::from_mount_options(&format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        dir.path().join("l1").display(),
        dir.path().join("l2").display(),
        dir.path().join("u").display(),
        dir.path().join("w").display()
    ))
    .unwrap();
    let mnt = dir.path().join("m");
    (dir, cfg, mnt)
}

#[test]
fn passthrough_serves_reads_without_read_requests() {
    let (_d, cfg, mnt) = layers();
    let server = strata_overlayfs::mount(cfg, &mnt).unwrap();
    let _guard = StrataMount {
        mnt: mnt.clone(),
        server: None,
    };
    assert_eq!(fs::read(mnt.join("data")).unwrap().len(), 1 << 20);
    fs::write(mnt.join("new"), b"written").unwrap();
    assert_eq!(fs::read(mnt.join("new")).unwrap(), b"written");
    let st = server.stats();
    assert!(
        st.open >= 2 && st.create >= 1 && st.lookup >= 1,
        "counters: {st:?}"
    );
    assert_eq!(
        st.read, 0,
        "FUSE passthrough should serve the data (kernel 6.9+ as root): {st:?}"
    );
    assert_eq!(st.write, 0, "writes should pass through too: {st:?}");
    server.stop().unwrap();
}

#[test]
fn without_passthrough_reads_are_served_by_us() {
    let (_d, mut cfg, mnt) = layers();
    cfg.passthrough = false;
    let server = strata_overlayfs::mount(cfg, &mnt).unwrap();
    let _guard = StrataMount {
        mnt: mnt.clone(),
        server: None,
    };
    assert_eq!(
        fs::read(mnt.join("data")).unwrap(),
        "x".repeat(1 << 20).as_bytes()
    );
    fs::write(mnt.join("new"), b"written").unwrap();
    assert_eq!(fs::read(mnt.join("new")).unwrap(), b"written");
    let st = server.stats();
    assert!(st.read > 0 && st.write > 0, "counters: {st:?}");
    server.stop().unwrap();
}

#[test]
fn serve_fd_of_a_separately_mounted_fuse_fd() {
    let (_d, cfg, mnt) = layers();
    let fd = strata_overlayfs::open_and_mount_fuse(&mnt, &FuseMountOptions::from(&cfg)).unwrap();
    let _guard = StrataMount {
        mnt: mnt.clone(),
        server: None,
    };
    let mut server = strata_overlayfs::serve_fd(cfg, fd).unwrap();
    assert_eq!(fs::read_to_string(mnt.join("small")).unwrap(), "small");
    server.attach_mountpoint(&mnt);
    // A file still open keeps a lazily unmounted FUSE connection alive: stop() must still end it
    // (through fusectl's abort) and return.
    let held = fs::File::open(mnt.join("small")).unwrap();
    server.stop().unwrap();
    drop(held);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(mnt.to_str().unwrap()),
        "still mounted after stop"
    );
    assert!(!strata_overlayfs::cleanup_stale(&mnt).unwrap());
}

#[test]
fn join_returns_when_unmounted() {
    let (_d, cfg, mnt) = layers();
    let server = strata_overlayfs::mount(cfg, &mnt).unwrap();
    // Unmounts (lazily) if an assertion below fails; the test unmounts itself otherwise.
    let _guard = StrataMount {
        mnt: mnt.clone(),
        server: None,
    };
    // The server's own handle on its mount is O_PATH: no directory open reached it (the musl
    // builds once made a real open there, an OPENDIR round trip in every mount).
    let st = server.stats();
    assert_eq!((st.opendir, st.releasedir), (0, 0), "{st:?}");
    assert_eq!(fs::read_to_string(mnt.join("small")).unwrap(), "small");
    nix::mount::umount2(&mnt, nix::mount::MntFlags::empty()).unwrap();
    server.join().unwrap();
}

#[test]
fn stop_detached_ends_the_mount_without_waiting_and_the_mountpoint_is_reusable() {
    let (_d, cfg, mnt) = layers();
    let server = strata_overlayfs::mount(cfg.clone(), &mnt).unwrap();
    let _guard = StrataMount {
        mnt: mnt.clone(),
        server: None,
    };
    fs::write(mnt.join("kept"), b"upper").unwrap();
    server.stop_detached().unwrap();
    let mounted = |m: &std::path::Path| {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(m.to_str().unwrap()))
    };
    assert!(!mounted(&mnt), "still mounted after stop_detached");
    // The upper layer has what was written, and a new server on the same mountpoint serves it.
    let again = strata_overlayfs::mount(cfg, &mnt).unwrap();
    assert_eq!(fs::read(mnt.join("kept")).unwrap(), b"upper");
    assert_eq!(fs::read(mnt.join("small")).unwrap(), b"small");
    again.stop().unwrap();
    assert!(!mounted(&mnt));
}
