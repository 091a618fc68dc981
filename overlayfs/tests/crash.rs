//! Crash: kill -9 of the server during a large copy-up and during a rename storm; the stale mount
//! is detected and cleaned by the library; after a remount no partial file is visible and data
//! fsynced before the kill is intact.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_strata-overlayfs");

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn opts(&self) -> String {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            self.p("l").display(),
            self.p("u").display(),
            self.p("w").display()
        )
    }
    fn start(&self) -> Server {
        let mnt = self.p("m");
        let child = Command::new(BIN)
            .args(["-f", "-o", &self.opts(), mnt.to_str().unwrap()])
            .spawn()
            .unwrap();
        // From here on the guard kills and reaps the child whatever happens.
        let server = Server {
            child: Some(child),
            mnt: mnt.clone(),
        };
        for _ in 0..400 {
            if fs::metadata(mnt.join("ready")).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server did not become ready");
    }
}

/// A foreground server child; killed and its mount cleaned on drop.
struct Server {
    child: Option<Child>,
    mnt: PathBuf,
}

impl Server {
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn setup(big_mib: usize) -> Setup {
    require_root_and_fuse();
    let dir = tempfile::Builder::new()
        .prefix(&unique("strata-ovl-crash"))
        .tempdir()
        .unwrap();
    for d in ["l", "u", "w", "m"] {
        fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let s = Setup { dir };
    write(&s.p("l/ready"), "");
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut f = fs::File::create(s.p("l/big")).unwrap();
    for _ in 0..big_mib {
        f.write_all(&chunk).unwrap();
    }
    for i in 0..20 {
        write(&s.p(&format!("l/f{i}")), &format!("content {i}"));
    }
    s
}

fn recover(s: &Setup, server: &mut Server) {
    server.kill9();
    let mnt = s.p("m");
    assert_eq!(
        nix::sys::statvfs::statvfs(&mnt).err(),
        Some(nix::errno::Errno::ENOTCONN),
        "a killed server leaves an ENOTCONN mount"
    );
    assert!(
        strata_overlayfs::cleanup_stale(&mnt).unwrap(),
        "stale mount not cleaned"
    );
    assert!(
        !strata_overlayfs::cleanup_stale(&mnt).unwrap(),
        "second cleanup found something"
    );
    assert!(
        fs::metadata(&mnt).is_ok(),
        "mountpoint unusable after cleanup"
    );
}

fn big_ok(path: &Path, mib: usize) {
    let data = fs::read(path).unwrap();
    let n = mib * 1024 * 1024;
    assert!(
        data.len() == n || data.len() == n + 6,
        "partial file visible: {} bytes",
        data.len()
    );
    for (i, b) in data[..n].iter().enumerate() {
        assert_eq!(*b, ((i % (1024 * 1024)) % 251) as u8, "corrupt byte at {i}");
    }
    if data.len() > n {
        assert_eq!(&data[n..], b"extra\n");
    }
}

#[test]
fn kill_during_copy_up() {
    let mib = 192;
    let s = setup(mib);
    let mut server = s.start();
    // Data fsynced before the kill must survive.
    let mut d = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(s.p("m/durable"))
        .unwrap();
    d.write_all(b"durable data").unwrap();
    d.sync_all().unwrap();
    drop(d);
    let big = s.p("m/big");
    let appender = std::thread::spawn(move || {
        // Opening for append copies the whole lower file up first.
        if let Ok(mut f) = OpenOptions::new().append(true).open(&big) {
            let _ = f.write_all(b"extra\n");
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    recover(&s, &mut server);
    let _ = appender.join();
    let _server = s.start();
    big_ok(&s.p("m/big"), mib);
    assert_eq!(
        fs::read_to_string(s.p("m/durable")).unwrap(),
        "durable data"
    );
    // Nothing half-built left where the merged view could see it; the staging area was emptied.
    let stage: Vec<_> = fs::read_dir(s.p("w/strata-stage")).unwrap().collect();
    assert!(stage.is_empty(), "staging area not cleaned on remount");
}

#[test]
fn kill_during_rename_storm() {
    let s = setup(1);
    let mut server = s.start();
    let m = s.p("m");
    let stormer = std::thread::spawn(move || {
        for round in 0..1000 {
            for i in 0..20 {
                let (a, b) = if round % 2 == 0 {
                    (format!("f{i}"), format!("g{i}"))
                } else {
                    (format!("g{i}"), format!("f{i}"))
                };
                if fs::rename(m.join(a), m.join(b)).is_err() {
                    return;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    recover(&s, &mut server);
    let _ = stormer.join();
    let _server = s.start();
    for i in 0..20 {
        let f = fs::read_to_string(s.p(&format!("m/f{i}")));
        let g = fs::read_to_string(s.p(&format!("m/g{i}")));
        let want = format!("content {i}");
        match (f, g) {
            (Ok(c), Err(_)) | (Err(_), Ok(c)) => assert_eq!(c, want, "file {i} has wrong content"),
            (a, b) => panic!("file {i}: expected exactly one of f{i}/g{i}, got {a:?} / {b:?}"),
        }
    }
}
