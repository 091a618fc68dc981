//! Robustness: a client killed mid-request does not disturb the server; layer directories changed
//! under the mount give errors (or the old view), never a crash or a hang.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;
use strata_overlayfs::Config;

#[test]
fn killed_clients_and_changed_layers() {
    require_root_and_fuse();
    let dir = tempfile::Builder::new()
        .prefix(&unique("strata-ovl-robust"))
        .tempdir()
        .unwrap();
    for d in ["l1", "l2", "u", "w", "m"] {
        fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let big: Vec<u8> = (0..64 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    fs::write(dir.path().join("l2/big"), &big).unwrap();
    for i in 0..50 {
        write(&dir.path().join(format!("l1/d/f{i}")), "x");
    }
    let cfg = Config::from_mount_options(&format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        dir.path().join("l1").display(),
        dir.path().join("l2").display(),
        dir.path().join("u").display(),
        dir.path().join("w").display()
    ))
    .unwrap();
    let mnt = dir.path().join("m");
    let server = strata_overlayfs::mount(cfg, &mnt).unwrap();
    let guard = StrataMount {
        mnt: mnt.clone(),
        server: Some(server),
    };

    // Clients killed in the middle of a copy-up, a read and a listing.
    for cmd in [
        format!("echo more >> {}", mnt.join("big").display()),
        format!("cat {} > /dev/null", mnt.join("big").display()),
        format!(
            "while true; do ls -l {} > /dev/null; done",
            mnt.join("d").display()
        ),
    ] {
        let mut c = Command::new("sh").arg("-c").arg(&cmd).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = c.wait();
    }
    let data = fs::read(mnt.join("big")).unwrap();
    assert!(
        data == big || (data.len() == big.len() + 5 && data[..big.len()] == big[..]),
        "big file damaged"
    );
    assert_eq!(fs::read_dir(mnt.join("d")).unwrap().count(), 50);

    // Layers changed under the mount: answers, not hangs or crashes.
    fs::remove_dir_all(dir.path().join("l1/d")).unwrap();
    let _ = fs::read_dir(mnt.join("d")).map(|rd| rd.count());
    let _ = fs::read(mnt.join("d/f1"));
    fs::remove_file(dir.path().join("l2/big")).unwrap();
    let _ = fs::metadata(mnt.join("big"));
    // The server still serves.
    fs::write(mnt.join("after"), b"ok").unwrap();
    assert_eq!(fs::read(mnt.join("after")).unwrap(), b"ok");
    assert!(nix::sys::statvfs::statvfs(&mnt).is_ok());
    guard.stop();
}
