//! The binary: fuse-overlayfs compatible argv, daemonizing, clean exit on umount, one-line errors,
//! and use as a mount helper through mount.fuse3.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_strata-overlayfs");

struct Layers {
    dir: tempfile::TempDir,
}

impl Layers {
    fn new() -> Layers {
        require_root_and_fuse();
        let dir = tempfile::Builder::new()
            .prefix(&unique("strata-ovl-cli"))
            .tempdir()
            .unwrap();
        for d in ["l1", "l2", "u", "w", "m"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        write(&dir.path().join("l2/file"), "lower");
        write(&dir.path().join("l1/top"), "top");
        Layers { dir }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn opts(&self) -> String {
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            self.p("l1").display(),
            self.p("l2").display(),
            self.p("u").display(),
            self.p("w").display()
        )
    }
}

/// Lazily unmount on drop.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn run_bin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run strata-overlayfs")
}

fn one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure, got success");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line: {err:?}"
    );
    assert!(
        err.contains(needle),
        "error {err:?} does not mention {needle:?}"
    );
}

/// Pids of processes whose command line mentions `needle` (to check none is left behind).
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

fn wait_gone(needle: &str) -> bool {
    for _ in 0..200 {
        if pids_mentioning(needle).is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn daemonizes_and_umount_ends_it_cleanly() {
    let l = Layers::new();
    let mnt = l.p("m");
    let out = run_bin(&["-o", &l.opts(), mnt.to_str().unwrap()]);
    let _g = Unmount(mnt.clone());
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The mount is ready when the command returns.
    assert_eq!(fs::read_to_string(mnt.join("file")).unwrap(), "lower");
    assert_eq!(fs::read_to_string(mnt.join("top")).unwrap(), "top");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(mnt.to_str().unwrap()) && mounts.contains("fuse.strata-overlayfs"),
        "not in mountinfo"
    );
    assert!(
        !pids_mentioning(mnt.to_str().unwrap()).is_empty(),
        "no server process"
    );
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success(), "umount failed");
    assert!(
        wait_gone(mnt.to_str().unwrap()),
        "server process left behind after umount"
    );
}

#[test]
fn foreground_exits_zero_on_umount() {
    let l = Layers::new();
    let mnt = l.p("m");
    let mut child = Command::new(BIN)
        .args(["-f", "-o", &l.opts(), mnt.to_str().unwrap()])
        .spawn()
        .unwrap();
    let _g = Unmount(mnt.clone());
    let mut ready = false;
    for _ in 0..200 {
        if fs::read_to_string(mnt.join("file")).is_ok() {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(ready, "foreground server never became ready");
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    let st = child.wait().unwrap();
    assert!(st.success(), "foreground server exit status {st:?}");
}

#[test]
fn errors_are_one_line() {
    let l = Layers::new();
    let mnt = l.p("m");
    let m = mnt.to_str().unwrap();
    let missing = l.p("nope");
    one_line_error(
        &run_bin(&["-o", &format!("lowerdir={}", missing.display()), m]),
        "nope",
    );
    one_line_error(
        &run_bin(&["-o", &format!("{},frobnicate=1", l.opts()), m]),
        "frobnicate",
    );
    one_line_error(
        &run_bin(&[
            "-o",
            &format!(
                "lowerdir={},upperdir={}",
                l.p("l1").display(),
                l.p("u").display()
            ),
            m,
        ]),
        "workdir",
    );
    one_line_error(
        &run_bin(&["-o", &l.opts(), l.p("nomnt").to_str().unwrap()]),
        "nomnt",
    );
    // Unreadable layer: a file where a directory is needed.
    write(&l.p("afile"), "x");
    one_line_error(
        &run_bin(&["-o", &format!("lowerdir={}", l.p("afile").display()), m]),
        "afile",
    );
    // workdir on another filesystem than upperdir.
    let other = l.p("otherfs");
    fs::create_dir_all(&other).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &other,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _t = Unmount(other.clone());
    let bad = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.p("l1").display(),
        l.p("u").display(),
        other.display()
    );
    one_line_error(&run_bin(&["-o", &bad, m]), "same filesystem");
    // Mountpoint in use.
    let out = run_bin(&["-o", &l.opts(), m]);
    let _g = Unmount(mnt.clone());
    assert!(out.status.success());
    let l2 = Layers::new();
    one_line_error(&run_bin(&["-o", &l2.opts(), m]), "in use");
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert!(wait_gone(m), "server left behind");
}

#[test]
fn help_lists_ignored_options_and_ignored_options_are_accepted() {
    let out = run_bin(&["--help"]);
    assert!(out.status.success());
    let h = String::from_utf8_lossy(&out.stdout);
    for o in [
        "noatime",
        "fsync=0|1",
        "squash_to_root",
        "redirect_dir",
        "uidmapping",
        "x-*",
    ] {
        assert!(h.contains(o), "--help does not list {o}");
    }
    let l = Layers::new();
    let mnt = l.p("m");
    let opts = format!(
        "{},rw,nodev,nosuid,noatime,_netdev,x-systemd.automount,redirect_dir=off,fsync=0,threaded=1,default_permissions,allow_other",
        l.opts()
    );
    let out = run_bin(&["-o", &opts, mnt.to_str().unwrap()]);
    let _g = Unmount(mnt.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(mnt.join("top")).unwrap(), "top");
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert!(wait_gone(mnt.to_str().unwrap()));
}

#[test]
fn works_as_mount_helper_via_mount_fuse3() {
    let l = Layers::new();
    let mnt = l.p("m");
    let helper = ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let helper = helper.expect("mount.fuse3 (package fuse3) is needed for the mount helper test");
    let bindir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // What mount(8) runs for `mount -t fuse.strata-overlayfs strata-overlayfs MNT -o ...`.
    let out = Command::new(helper)
        .env("PATH", path)
        .args([
            "strata-overlayfs",
            mnt.to_str().unwrap(),
            "-t",
            "fuse.strata-overlayfs",
            "-o",
            &format!("rw,{}", l.opts()),
        ])
        .output()
        .unwrap();
    let _g = Unmount(mnt.clone());
    assert!(
        out.status.success(),
        "mount.fuse3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(mnt.join("file")).unwrap(), "lower");
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert!(wait_gone(mnt.to_str().unwrap()));
}
