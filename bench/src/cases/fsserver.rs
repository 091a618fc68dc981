//! Overlay server costs on the bigtree image (strata's store, all its layers): how long a fresh
//! mount takes until the first stat in the merged view is answered, and how much memory a FUSE
//! server holds while the whole tree is walked again and again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::rootfs::{Backend, Layers, MountWorker, Mounted, is_mount_point};
use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite, unique_name};

/// The image whose layers both cases mount.
pub const BIG_IMAGE: &str = "strata-bigtree:latest";

/// The image's layers (top first) with a private scratch root for mount points, upper and work
/// dirs (the store's own layer directories are only read).
fn big_layers() -> CaseResult<Layers> {
    let (_, dirs) = crate::subjects::image_layers_of(BIG_IMAGE).map_err(CaseError::Skipped)?;
    if dirs.is_empty() {
        return Err(CaseError::failed(format!("{BIG_IMAGE} has no layers")));
    }
    let root = std::env::temp_dir().join(unique_name("bigtree-mnt"));
    std::fs::create_dir_all(&root)?;
    Ok(Layers {
        flat: root.join("unused-flat"),
        root,
        dirs,
    })
}

/// Some regular file of the top layer (relative path), the object the first stat asks for.
fn a_top_file(dir: &Path, rel: &Path) -> Option<PathBuf> {
    let mut subdirs = Vec::new();
    for e in std::fs::read_dir(dir.join(rel)).ok()?.flatten() {
        let ft = e.file_type().ok()?;
        if ft.is_file() {
            return Some(rel.join(e.file_name()));
        }
        if ft.is_dir() {
            subdirs.push(rel.join(e.file_name()));
        }
    }
    subdirs.into_iter().find_map(|d| a_top_file(dir, &d))
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

/// ---- mount until the first stat is answered ----
struct MountFirstStat {
    backend: Backend,
    fuse_bin: Option<PathBuf>,
    layers: Option<Arc<Layers>>,
    file: PathBuf,
}

impl Case for MountFirstStat {
    fn subject(&self) -> String {
        self.backend.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        self.fuse_bin = self.backend.fuse_binary()?;
        let layers = big_layers()?;
        self.file = a_top_file(&layers.dirs[0], Path::new("")).ok_or_else(|| {
            CaseError::failed(format!("no regular file in {BIG_IMAGE}'s top layer"))
        })?;
        self.layers = Some(Arc::new(layers));
        self.run_once().map(drop)
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let layers = self
            .layers
            .clone()
            .ok_or_else(|| CaseError::failed("not prepared"))?;
        let (b, bin, file) = (self.backend, self.fuse_bin.clone(), self.file.clone());
        MountWorker::get()?.run(move || -> CaseResult<Sample> {
            let t = Instant::now();
            let m = Mounted::mount(b, &layers, bin.as_deref())?;
            let mounted = t.elapsed();
            let md = std::fs::metadata(m.mnt.join(&file))?;
            let e = t.elapsed();
            std::hint::black_box(md.ino());
            drop(m);
            Ok(Sample {
                value: e,
                parts: vec![
                    ("mount".to_string(), mounted),
                    ("first-stat".to_string(), e - mounted),
                ],
                metrics: Vec::new(),
            })
        })?
    }
    fn teardown(&mut self) {
        self.layers = None;
    }
    fn quiesce(&self) -> Duration {
        Duration::from_millis(2)
    }
}

/// ---- server memory over repeated walks ----
/// A FUSE server run in the foreground as our child (so its pid is known), on the mount worker.
struct Served {
    child: Child,
    mnt: PathBuf,
}

impl Served {
    fn start(bin: &Path, layers: &Layers) -> CaseResult<Served> {
        let (_scratch, mnt, opts) = layers.scratch_mount("rss")?;
        let child = Command::new(bin)
            .arg("-f")
            .arg("-o")
            .arg(&opts)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut s = Served { child, mnt };
        let t = Instant::now();
        while !is_mount_point(&s.mnt) {
            if let Some(st) = s.child.try_wait()? {
                return Err(CaseError::failed(format!(
                    "{} exited with {st} before mounting",
                    bin.display()
                )));
            }
            if t.elapsed() > Duration::from_secs(10) {
                s.stop();
                return Err(CaseError::failed(format!(
                    "{} did not mount within 10 s",
                    bin.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(s)
    }

    /// VmRSS and VmHWM of the server, in bytes.
    fn memory(&self) -> CaseResult<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |k: &str| -> CaseResult<f64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kib| kib * 1024.0)
                .ok_or_else(|| CaseError::failed(format!("no {k} in the server's /proc status")))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    fn stop(&mut self) {
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::empty());
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // It did not end with its mount: stop it (our own child, by pid) and detach the mount.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop();
    }
}

struct ServerRss {
    backend: Backend,
    layers: Option<Arc<Layers>>,
    served: Arc<Mutex<Option<Served>>>,
    walks: u64,
}

impl Case for ServerRss {
    fn subject(&self) -> String {
        self.backend.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        let bin = self
            .backend
            .fuse_binary()?
            .ok_or_else(|| CaseError::failed("not a FUSE backend"))?;
        let layers = Arc::new(big_layers()?);
        self.layers = Some(layers.clone());
        let slot = self.served.clone();
        MountWorker::get()?.run(move || -> CaseResult<()> {
            let s = Served::start(&bin, &layers)?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
            Ok(())
        })??;
        self.walks = 0;
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        self.walks += 1;
        let (slot, walks) = (self.served.clone(), self.walks);
        MountWorker::get()?.run(move || -> CaseResult<Sample> {
            let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            let s = guard
                .as_ref()
                .ok_or_else(|| CaseError::failed("not mounted"))?;
            let t = Instant::now();
            let mut n = 0;
            walk(&s.mnt, &mut n)?;
            let e = t.elapsed();
            let (rss, hwm) = s.memory()?;
            Ok(Sample {
                value: e,
                parts: Vec::new(),
                metrics: vec![
                    ("walk_no".to_string(), walks as f64),
                    ("entries".to_string(), n as f64),
                    ("vmrss_bytes".to_string(), rss),
                    ("vmhwm_bytes".to_string(), hwm),
                ],
            })
        })?
    }
    fn teardown(&mut self) {
        let slot = self.served.clone();
        if let Ok(w) = MountWorker::get() {
            let _ = w.run(move || drop(slot.lock().unwrap_or_else(|p| p.into_inner()).take()));
        }
        self.layers = None;
    }
    fn quiesce(&self) -> Duration {
        Duration::from_millis(1)
    }
}

pub fn groups(suite: Suite) -> Vec<Group> {
    let mut first = Group::new(
        Family::Fs,
        "mount-first-stat",
        format!(
            "Time from starting a mount of {BIG_IMAGE}'s layers (fresh mount point, upper and work dirs, made \
             inside the timed span: three mkdirs) until stat() of a file of the top layer through the merged \
             view returns; parts: mount (the FUSE servers are started by their fuse-overlayfs-compatible command \
             line, which daemonizes once the mount is ready) and first-stat. Unmounted after each sample, untimed; \
             on the mount worker's private namespace."
        ),
    )
    .reference("kernel-overlayfs")
    .max_samples(if suite == Suite::Quick { 8 } else { 30 });
    for b in [Backend::Kernel, Backend::Strata, Backend::FuseOverlayfs] {
        first = first.case(MountFirstStat {
            backend: b,
            fuse_bin: None,
            layers: None,
            file: PathBuf::new(),
        });
    }
    let mut rss = Group::new(
        Family::Fs,
        "server-rss-walks",
        format!(
            "One FUSE server (started with -f as our child, so its pid is known) serves {BIG_IMAGE}'s layers for \
             the whole group; each sample is one full walk (readdir + lstat of every entry) of the merged tree, \
             timed, then the server's VmRSS and VmHWM from /proc/PID/status are recorded as metrics in bytes \
             (walk_no counts every walk of the mount, warm-up walks included). A server that does not grow \
             shows the same vmrss_bytes on every walk. The kernel has no server process, so no kernel subject."
        ),
    )
    .reference("fuse-overlayfs")
    .max_samples(10);
    for b in [Backend::Strata, Backend::FuseOverlayfs] {
        rss = rss.case(ServerRss {
            backend: b,
            layers: None,
            served: Arc::new(Mutex::new(None)),
            walks: 0,
        });
    }
    vec![first, rss]
}
