//! Filesystem workloads on each rootfs backend (bind, kernel overlayfs, strata-overlayfs, fuse-overlayfs)
//! over the same three synthetic layers: warm and cold metadata walks, stat of every file, readdir of a
//! 10,000-entry directory, small-file create and delete, sequential read and write, random 4 KiB reads,
//! copy-up of a large file, and extracting a tarball of many small files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::rootfs::{Backend, Layers, MountWorker, Mounted, copy_tree};
use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite, unique_name};
use crate::subjects::run_checked;

/// Sizes of the synthetic tree for a suite.
#[derive(Clone, Copy)]
struct Shape {
    /// Small files spread over the three layers (in directories of 100).
    files: usize,
    big_dir: usize,
    large_mib: usize,
    tar_files: usize,
}

fn shape(suite: Suite) -> Shape {
    match suite {
        Suite::Quick => Shape {
            files: 1500,
            big_dir: 10_000,
            large_mib: 16,
            tar_files: 500,
        },
        _ => Shape {
            files: 9000,
            big_dir: 10_000,
            large_mib: 256,
            tar_files: 2000,
        },
    }
}

const LARGE: &str = "data/large.bin";
const BIG_DIR: &str = "bigdir";

/// The fs layers and the tarball, built once per process.
struct Fixture {
    layers: Layers,
    tarball: PathBuf,
}

fn fixture(suite: Suite) -> CaseResult<Arc<Fixture>> {
    let mut f = FIXTURE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(x) = f.as_ref() {
        return Ok(x.clone());
    }
    let x = Arc::new(build(shape(suite))?);
    *f = Some(x.clone());
    Ok(x)
}

static FIXTURE: Mutex<Option<Arc<Fixture>>> = Mutex::new(None);

/// Drop the process-wide fixture (end of a run); the last user's drop removes its files.
pub fn release_fixture() {
    drop(FIXTURE.lock().unwrap_or_else(|p| p.into_inner()).take());
}

fn build(s: Shape) -> CaseResult<Fixture> {
    let root = std::env::temp_dir().join(unique_name("fslayers"));
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("{i}"))).collect();
    copy_tree(crate::subjects::busybox_rootfs()?, &dirs[0])?;
    for i in 0..s.files {
        let layer = &dirs[i % 3];
        let d = layer.join(format!("tree/d{}", i / 100));
        if i % 100 < 3 {
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(d.join(format!("f{i}")), [b'x'; 64])?;
    }
    let big = dirs[1].join(BIG_DIR);
    std::fs::create_dir_all(&big)?;
    for i in 0..s.big_dir {
        std::fs::File::create(big.join(format!("entry{i:05}")))?;
    }
    std::fs::create_dir_all(dirs[0].join("data"))?;
    let mut large = std::fs::File::create(dirs[0].join(LARGE))?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..s.large_mib {
        rng.fill(&mut chunk[..]);
        large.write_all(&chunk)?;
    }
    drop(large);
    let src = root.join("tarsrc");
    for i in 0..s.tar_files {
        let d = src.join(format!("p{}", i / 50));
        if i % 50 == 0 {
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(
            d.join(format!("file{i}.txt")),
            format!("small file {i}\n").repeat(8),
        )?;
    }
    let tarball = root.join("many-small.tar");
    run_checked(
        Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
        "tar -c",
    )?;
    let flat = root.join("flat");
    for d in dirs.iter() {
        copy_tree(d, &flat)?;
    }
    let mut top_first = dirs;
    top_first.reverse();
    let layers = Layers {
        root,
        dirs: top_first,
        flat,
    };
    Ok(Fixture { layers, tarball })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    WalkWarm,
    WalkCold,
    StatAll,
    Readdir10k,
    CreateDelete1000,
    SeqRead,
    SeqWrite,
    RandRead4k,
    CopyUp,
    TarExtract,
}

impl Workload {
    pub const ALL: [Workload; 10] = [
        Workload::WalkWarm,
        Workload::WalkCold,
        Workload::StatAll,
        Workload::Readdir10k,
        Workload::CreateDelete1000,
        Workload::SeqRead,
        Workload::SeqWrite,
        Workload::RandRead4k,
        Workload::CopyUp,
        Workload::TarExtract,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Workload::WalkWarm => "walk-warm",
            Workload::WalkCold => "walk-cold",
            Workload::StatAll => "stat-all",
            Workload::Readdir10k => "readdir-10k",
            Workload::CreateDelete1000 => "create-delete-1000",
            Workload::SeqRead => "seq-read",
            Workload::SeqWrite => "seq-write",
            Workload::RandRead4k => "rand-read-4k",
            Workload::CopyUp => "copy-up",
            Workload::TarExtract => "tar-extract",
        }
    }
    fn method(self, s: Shape) -> String {
        let what = match self {
            Workload::WalkWarm => "recursive readdir + lstat of the whole tree, caches warm (a previous walk on the same mount)".to_string(),
            Workload::WalkCold => "the same walk on a fresh mount made untimed before the sample, after which (still untimed) sync and echo 3 > /proc/sys/vm/drop_caches drop the page, dentry and inode caches, for every subject alike".into(),
            Workload::StatAll => "stat() of every file of the tree by path (list made once)".into(),
            Workload::Readdir10k => format!("readdir of a {}-entry directory from a lower layer", s.big_dir),
            Workload::CreateDelete1000 => "create 1000 files of 100 bytes in a new directory, then delete them and it; parts create and delete".into(),
            Workload::SeqRead => format!("sequential read of a {} MiB lower file in 1 MiB reads", s.large_mib),
            Workload::SeqWrite => format!("sequential write of a new {} MiB file in 1 MiB writes, then fsync; deleted untimed", s.large_mib),
            Workload::RandRead4k => format!("2000 random 4 KiB preads (fixed seed) of the {} MiB lower file", s.large_mib),
            Workload::CopyUp => format!("open the {} MiB lower file for writing and write 1 byte (full copy-up), fsync; fresh mount per sample", s.large_mib),
            Workload::TarExtract => format!("tar -xf of a tarball of {} small files into a new directory; removed untimed", s.tar_files),
        };
        format!(
            "{what}. Layers: busybox + {} small files over 3 layers, a {}-entry directory, a {} MiB file; mounted on the \
             mount worker's private namespace.",
            s.files, s.big_dir, s.large_mib
        )
    }
    /// Heavy workloads get fewer samples.
    fn heavy(self) -> bool {
        matches!(
            self,
            Workload::SeqRead | Workload::SeqWrite | Workload::CopyUp | Workload::WalkCold
        )
    }
}

/// Make the next access cold: write back dirty data, then drop the page, dentry and inode caches.
fn drop_caches() -> CaseResult<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| CaseError::failed(format!("echo 3 > /proc/sys/vm/drop_caches: {e}")))
}

fn walk(dir: &Path, count: &mut u64) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let md = std::fs::symlink_metadata(e.path())?;
        *count += 1;
        if md.is_dir() {
            walk(&e.path(), count)?;
        }
    }
    Ok(())
}

fn file_list(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            file_list(&e.path(), out)?;
        } else {
            out.push(e.path());
        }
    }
    Ok(())
}

fn run_workload(
    w: Workload,
    m: &Mounted,
    files: &[PathBuf],
    tarball: &Path,
    round: u64,
) -> CaseResult<Sample> {
    let mnt = &m.mnt;
    let t = Instant::now();
    let mut parts = Vec::new();
    match w {
        Workload::WalkWarm | Workload::WalkCold => {
            let mut n = 0;
            walk(mnt, &mut n)?;
            std::hint::black_box(n);
        }
        Workload::StatAll => {
            for f in files {
                std::hint::black_box(std::fs::metadata(mnt.join(f))?);
            }
        }
        Workload::Readdir10k => {
            std::hint::black_box(std::fs::read_dir(mnt.join(BIG_DIR))?.count());
        }
        Workload::CreateDelete1000 => {
            let d = mnt.join(format!("cd{round}"));
            std::fs::create_dir(&d)?;
            for i in 0..1000 {
                std::fs::write(d.join(format!("n{i}")), [b'y'; 100])?;
            }
            let created = t.elapsed();
            for i in 0..1000 {
                std::fs::remove_file(d.join(format!("n{i}")))?;
            }
            std::fs::remove_dir(&d)?;
            parts.push(("create".to_string(), created));
            parts.push(("delete".to_string(), t.elapsed() - created));
        }
        Workload::SeqRead => {
            let mut f = std::fs::File::open(mnt.join(LARGE))?;
            let mut buf = vec![0u8; 1 << 20];
            while f.read(&mut buf)? > 0 {}
        }
        Workload::SeqWrite => {
            let p = mnt.join(format!("w{round}.bin"));
            let len = std::fs::metadata(mnt.join(LARGE))?.len() as usize;
            let mut f = std::fs::File::create(&p)?;
            let buf = vec![0x5au8; 1 << 20];
            for _ in 0..len >> 20 {
                f.write_all(&buf)?;
            }
            f.sync_all()?;
            let e = t.elapsed();
            std::fs::remove_file(&p)?;
            return Ok(e.into());
        }
        Workload::RandRead4k => {
            let f = std::fs::File::open(mnt.join(LARGE))?;
            let blocks = f.metadata()?.len() / 4096;
            let mut rng = StdRng::seed_from_u64(round);
            let mut buf = [0u8; 4096];
            for _ in 0..2000 {
                f.read_exact_at(&mut buf, rng.random_range(0..blocks) * 4096)?;
            }
        }
        Workload::CopyUp => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(mnt.join(LARGE))?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(b"z")?;
            f.sync_all()?;
        }
        Workload::TarExtract => {
            let d = mnt.join(format!("x{round}"));
            std::fs::create_dir(&d)?;
            run_checked(
                Command::new("tar")
                    .arg("-C")
                    .arg(&d)
                    .arg("-xf")
                    .arg(tarball),
                "tar -x",
            )?;
            let e = t.elapsed();
            std::fs::remove_dir_all(&d)?;
            return Ok(e.into());
        }
    }
    Ok(Sample {
        value: t.elapsed(),
        parts,
        metrics: Vec::new(),
    })
}

struct FsCase {
    backend: Backend,
    workload: Workload,
    suite: Suite,
    fuse_bin: Option<PathBuf>,
    fixture: Option<Arc<Fixture>>,
    mounted: Arc<Mutex<Option<Mounted>>>,
    files: Arc<Vec<PathBuf>>,
    round: u64,
}

impl FsCase {
    fn fresh_mount_per_sample(&self) -> bool {
        matches!(self.workload, Workload::WalkCold | Workload::CopyUp)
    }
}

impl Case for FsCase {
    fn subject(&self) -> String {
        self.backend.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        self.fuse_bin = self.backend.fuse_binary()?;
        let fx = fixture(self.suite)?;
        let mut files = Vec::new();
        for d in &fx.layers.dirs {
            let mut f = Vec::new();
            file_list(&d.join("tree"), &mut f)?;
            files.extend(
                f.into_iter()
                    .filter_map(|p| p.strip_prefix(d).ok().map(Path::to_path_buf)),
            );
        }
        self.files = Arc::new(files);
        self.fixture = Some(fx);
        if !self.fresh_mount_per_sample() {
            let (fx, b, bin, slot) = (
                self.fixture.clone(),
                self.backend,
                self.fuse_bin.clone(),
                self.mounted.clone(),
            );
            MountWorker::get()?.run(move || -> CaseResult<()> {
                let fx = fx.ok_or_else(|| CaseError::failed("no fixture"))?;
                let m = Mounted::mount(b, &fx.layers, bin.as_deref())?;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
                Ok(())
            })??;
        }
        // One untimed run proves the workload works here (and warms the warm cases).
        self.run_once().map(drop)
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        self.round += 1;
        let (w, round, fresh) = (self.workload, self.round, self.fresh_mount_per_sample());
        let (fx, b, bin) = (
            self.fixture
                .clone()
                .ok_or_else(|| CaseError::failed("not prepared"))?,
            self.backend,
            self.fuse_bin.clone(),
        );
        let (slot, files) = (self.mounted.clone(), self.files.clone());
        MountWorker::get()?.run(move || -> CaseResult<Sample> {
            if fresh {
                let m = Mounted::mount(b, &fx.layers, bin.as_deref())?;
                if w == Workload::WalkCold {
                    drop_caches()?;
                }
                let r = run_workload(w, &m, &files, &fx.tarball, round);
                drop(m);
                r
            } else {
                let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
                let m = guard
                    .as_ref()
                    .ok_or_else(|| CaseError::failed("not mounted"))?;
                run_workload(w, m, &files, &fx.tarball, round)
            }
        })?
    }
    fn teardown(&mut self) {
        let slot = self.mounted.clone();
        // Unmount on the worker (the mount lives in its namespace).
        if let Ok(w) = MountWorker::get() {
            let _ = w.run(move || drop(slot.lock().unwrap_or_else(|p| p.into_inner()).take()));
        }
        self.fixture = None;
    }
    fn quiesce(&self) -> Duration {
        Duration::from_millis(1)
    }
}

pub fn groups(suite: Suite) -> Vec<Group> {
    let s = shape(suite);
    Workload::ALL
        .iter()
        .map(|&w| {
            let mut g = Group::new(Family::Fs, w.name(), w.method(s)).reference("kernel-overlayfs");
            let cap = match (suite, w.heavy()) {
                (Suite::Quick, true) => 2,
                (Suite::Quick, false) => 4,
                (_, true) => 10,
                (_, false) => 25,
            };
            g = g.max_samples(cap);
            for b in Backend::ALL {
                g = g.case(FsCase {
                    backend: b,
                    workload: w,
                    suite,
                    fuse_bin: None,
                    fixture: None,
                    mounted: Arc::new(Mutex::new(None)),
                    files: Arc::new(Vec::new()),
                    round: 0,
                });
            }
            g
        })
        .collect()
}
