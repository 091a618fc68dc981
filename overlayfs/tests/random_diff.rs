//! Randomized differential test: random sequences of changes applied to kernel overlayfs and to
//! strata-overlayfs; results and merged trees compared after every step, upper layers at the end.
//! The seeds are printed; replay one with STRATA_FUZZ_SEED=<seed> (and STRATA_FUZZ_OPS=<n>).

mod common;

use std::fs::{self, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use nix::fcntl::AT_FDCWD;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_overlayfs::WhiteoutForm;
use strata_overlayfs::sys::{RenameFlags, renameat2};

fn small_layers(root: &Path, form: WhiteoutForm) -> Vec<PathBuf> {
    let (l1, l2, l3) = (root.join("l1"), root.join("l2"), root.join("l3"));
    write(&l3.join("a/b"), "lower b");
    write(&l3.join("a/c"), "lower c");
    write(&l3.join("d/e/f"), "deep");
    write(&l3.join("g"), "gee");
    write(&l3.join("h/a"), "ha");
    std::os::unix::fs::symlink("g", l3.join("s")).unwrap();
    write(&l2.join("a/d"), "mid d");
    write(&l2.join("d/c"), "mid c");
    whiteout(&l2.join("a"), "c", form);
    write(&l2.join("f"), "file f");
    fs::create_dir_all(l2.join("e")).unwrap();
    write(&l1.join("b"), "top b");
    write(&l1.join("h/b"), "hb");
    whiteout(&l1.join("h"), "a", form);
    fs::create_dir_all(l1.join("c")).unwrap();
    vec![l1, l2, l3]
}

const NAMES: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h", "s"];

#[derive(Debug)]
enum RandOp {
    Create(String, Vec<u8>),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String, u32),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Link(String, String),
    Symlink(String, String),
    Chmod(String, u32),
    Chown(String, u32),
    SetXattr(String, String, String),
    RemoveXattr(String, String),
    Read(String),
    List(String),
}

fn pick(rng: &mut StdRng, v: &[String]) -> String {
    v[rng.random_range(0..v.len())].clone()
}

fn random_op(rng: &mut StdRng, paths: &[String], dirs: &[String]) -> RandOp {
    let any = |rng: &mut StdRng| {
        if paths.is_empty() || rng.random_bool(0.3) {
            NAMES[rng.random_range(0..NAMES.len())].to_string()
        } else {
            pick(rng, paths)
        }
    };
    let fresh = |rng: &mut StdRng| {
        let d = pick(rng, dirs);
        let n = NAMES[rng.random_range(0..NAMES.len())];
        if d.is_empty() {
            n.to_string()
        } else {
            format!("{d}/{n}")
        }
    };
    let data = |rng: &mut StdRng| {
        (0..rng.random_range(0..64))
            .map(|_| rng.random_range(b'a'..=b'z'))
            .collect::<Vec<u8>>()
    };
    match rng.random_range(0..15) {
        0 => RandOp::Create(fresh(rng), data(rng)),
        1 => RandOp::Write(any(rng), rng.random_range(0..32), data(rng)),
        2 => RandOp::Truncate(any(rng), rng.random_range(0..16)),
        3 => {
            let flags =
                [0, 0, 0, libc::RENAME_NOREPLACE, libc::RENAME_EXCHANGE][rng.random_range(0..5)];
            RandOp::Rename(any(rng), fresh(rng), flags)
        }
        4 => RandOp::Unlink(any(rng)),
        5 => RandOp::Mkdir(fresh(rng)),
        6 => RandOp::Rmdir(any(rng)),
        7 => RandOp::Link(any(rng), fresh(rng)),
        8 => RandOp::Symlink(fresh(rng), any(rng)),
        9 => RandOp::Chmod(
            any(rng),
            [0o644, 0o600, 0o755, 0o4755, 0o1777][rng.random_range(0..5)],
        ),
        10 => RandOp::Chown(any(rng), rng.random_range(0..3) * 1000),
        11 => RandOp::SetXattr(
            any(rng),
            format!("user.k{}", rng.random_range(0..3)),
            format!("v{}", rng.random_range(0..100)),
        ),
        12 => RandOp::RemoveXattr(any(rng), format!("user.k{}", rng.random_range(0..3))),
        13 => RandOp::Read(any(rng)),
        _ => RandOp::List(pick(rng, dirs)),
    }
}

fn nx<T>(r: nix::Result<T>) -> io::Result<T> {
    r.map_err(|e| io::Error::from_raw_os_error(e as i32))
}

fn apply(m: &Path, op: &RandOp) -> io::Result<Vec<u8>> {
    let p = |s: &str| m.join(s);
    match op {
        RandOp::Create(f, d) => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p(f))?
            .write_all(d)
            .map(|_| vec![]),
        RandOp::Write(f, off, d) => {
            let mut fh = OpenOptions::new().write(true).open(p(f))?;
            fh.seek(SeekFrom::Start(*off))?;
            fh.write_all(d).map(|_| vec![])
        }
        RandOp::Truncate(f, n) => OpenOptions::new()
            .write(true)
            .open(p(f))?
            .set_len(*n)
            .map(|_| vec![]),
        RandOp::Rename(a, b, fl) => nx(renameat2(
            AT_FDCWD,
            &p(a),
            AT_FDCWD,
            &p(b),
            RenameFlags::from_raw(*fl),
        ))
        .map(|_| vec![]),
        RandOp::Unlink(f) => fs::remove_file(p(f)).map(|_| vec![]),
        RandOp::Mkdir(d) => fs::create_dir(p(d)).map(|_| vec![]),
        RandOp::Rmdir(d) => fs::remove_dir(p(d)).map(|_| vec![]),
        RandOp::Link(a, b) => fs::hard_link(p(a), p(b)).map(|_| vec![]),
        RandOp::Symlink(l, t) => std::os::unix::fs::symlink(t, p(l)).map(|_| vec![]),
        RandOp::Chmod(f, mode) => {
            let md = fs::symlink_metadata(p(f))?;
            if md.file_type().is_symlink() {
                return Ok(vec![]);
            }
            fs::set_permissions(p(f), fs::Permissions::from_mode(*mode)).map(|_| vec![])
        }
        RandOp::Chown(f, id) => nx(nix::unistd::fchownat(
            AT_FDCWD,
            &p(f),
            Some(nix::unistd::Uid::from_raw(*id)),
            Some(nix::unistd::Gid::from_raw(*id)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ))
        .map(|_| vec![]),
        RandOp::SetXattr(f, k, v) => {
            let md = fs::symlink_metadata(p(f))?;
            if md.file_type().is_symlink() {
                return Ok(vec![]);
            }
            let path = p(f);
            let (dir, name) = (path.parent().unwrap(), path.file_name().unwrap());
            let d = nx(nix::fcntl::open(
                dir,
                nix::fcntl::OFlag::O_PATH,
                nix::sys::stat::Mode::empty(),
            ))?;
            use std::os::fd::AsFd;
            strata_overlayfs::sys::set_xattr(d.as_fd(), Some(name), k.as_ref(), v.as_bytes(), 0)
                .map(|_| vec![])
        }
        RandOp::RemoveXattr(f, k) => {
            let path = p(f);
            let (dir, name) = (
                path.parent().unwrap_or(m),
                path.file_name().unwrap_or_default(),
            );
            let d = nx(nix::fcntl::open(
                dir,
                nix::fcntl::OFlag::O_PATH,
                nix::sys::stat::Mode::empty(),
            ))?;
            use std::os::fd::AsFd;
            strata_overlayfs::sys::remove_xattr(d.as_fd(), Some(name), k.as_ref()).map(|_| vec![])
        }
        RandOp::Read(f) => fs::read(p(f)),
        RandOp::List(d) => {
            let mut v: Vec<String> = fs::read_dir(p(d))?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<_>>()?;
            v.sort();
            Ok(v.join("/").into_bytes())
        }
    }
}

fn run_seed(seed: u64, ops: usize, form: WhiteoutForm) {
    eprintln!(
        "random_diff: seed {seed} ({ops} ops, {form:?} whiteouts); replay with STRATA_FUZZ_SEED={seed}"
    );
    let mut p = Pair::new(form, true, small_layers);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history = Vec::new();
    for step in 0..ops {
        let snap = snapshot(p.k(), MERGED);
        let paths: Vec<String> = snap.keys().cloned().collect();
        let mut dirs: Vec<String> = snap
            .iter()
            .filter(|(_, e)| e.kind == "dir")
            .map(|(k, _)| k.clone())
            .collect();
        dirs.push(String::new());
        let op = random_op(&mut rng, &paths, &dirs);
        let k = apply(p.k(), &op).map_err(|e| e.raw_os_error());
        let s = apply(p.s(), &op).map_err(|e| e.raw_os_error());
        history.push(format!("{step}: {op:?} -> {k:?}"));
        if std::env::var_os("STRATA_FUZZ_VERBOSE").is_some() {
            eprintln!("{}", history[history.len() - 1]);
        }
        let tail = || history[history.len().saturating_sub(15)..].join("\n");
        assert_eq!(
            k,
            s,
            "seed {seed} step {step}: {op:?}: kernel {k:?}, strata {s:?}\nlast ops:\n{}",
            tail()
        );
        let ks = snapshot(p.k(), MERGED);
        let ss = snapshot(p.s(), MERGED_STRICT);
        if ks != ss {
            eprintln!("seed {seed} step {step} diverged; last ops:\n{}", tail());
            assert_same(&format!("seed {seed} step {step} ({op:?})"), &ks, &ss);
        }
    }
    if form == WhiteoutForm::Kernel {
        p.compare_uppers(&format!("seed {seed} after {ops} ops"));
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("STRATA_FUZZ_SEED") {
        Ok(s) => vec![s.parse().expect("STRATA_FUZZ_SEED must be a number")],
        // Fixed seeds keep CI deterministic; explore others with STRATA_FUZZ_SEED. 13 found the
        // opaque marker the kernel leaves on a directory whose rename failed with ENOTEMPTY
        // (it replaced 3, to keep CI's fuzz time).
        Err(_) => vec![1, 2, 4, 13],
    }
}

fn ops() -> usize {
    std::env::var("STRATA_FUZZ_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(550)
}

#[test]
fn random_changes_match_kernel() {
    for seed in seeds() {
        run_seed(seed, ops(), WhiteoutForm::Kernel);
    }
}

#[test]
fn random_changes_match_kernel_oci_whiteouts() {
    // strata writes `.wh.` whiteouts here; the merged views must still agree at every step.
    for seed in seeds().into_iter().take(1) {
        run_seed(seed.wrapping_add(1000), ops() / 2, WhiteoutForm::Oci);
    }
}
