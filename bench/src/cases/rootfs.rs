//! Rootfs cases: time to a usable root — mount, then the first exec from it answered — for bind, kernel
//! overlayfs, strata-overlayfs and fuse-overlayfs over the same synthetic layers (1, 4, 16, 64).
//!
//! Every mount happens on a dedicated worker thread that has unshared its mount namespace (a thread may
//! unshare CLONE_NEWNS|CLONE_FS alone), so nothing of it is ever visible on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite, unique_name};
use crate::subjects::{find_binary, run_checked};

type Job = Box<dyn FnOnce() + Send>;

/// A thread in a private mount namespace (all mounts slaves of the host's) that runs jobs synchronously.
pub struct MountWorker {
    tx: mpsc::Sender<Job>,
}

impl MountWorker {
    /// The process-wide worker.
    pub fn get() -> CaseResult<&'static MountWorker> {
        static W: OnceLock<Result<MountWorker, String>> = OnceLock::new();
        W.get_or_init(|| MountWorker::spawn().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| CaseError::failed(format!("mount worker: {e}")))
    }

    fn spawn() -> CaseResult<MountWorker> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("strata-bench-mounts".into())
            .spawn(move || {
                let r = nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
                    .and_then(|()| {
                        nix::mount::mount(
                            None::<&str>,
                            "/",
                            None::<&str>,
                            MsFlags::MS_REC | MsFlags::MS_SLAVE,
                            None::<&str>,
                        )
                    })
                    .map_err(|e| e.to_string());
                let ok = r.is_ok();
                let _ = ready_tx.send(r);
                if ok {
                    for job in rx {
                        job();
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| CaseError::failed("mount worker died"))?
            .map_err(CaseError::failed)?;
        Ok(MountWorker { tx })
    }

    /// Run `f` on the worker and wait for its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> CaseResult<T> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| CaseError::failed("mount worker gone"))?;
        rx.recv()
            .map_err(|_| CaseError::failed("mount worker dropped a job"))
    }
}

/// Synthetic layers, bottom one holding busybox: `dirs[0]` is the TOP layer (overlay's lowerdir order).
pub struct Layers {
    pub root: PathBuf,
    /// Top first.
    pub dirs: Vec<PathBuf>,
    /// All layers merged into one tree (what a bind-mount rootfs would be).
    pub flat: PathBuf,
}

impl Layers {
    /// A fresh scratch dir under `root` with a mountpoint, an upper and a work dir: (scratch, mountpoint,
    /// the overlay options `lowerdir=…,upperdir=…,workdir=…` over these layers).
    pub fn scratch_mount(&self, what: &str) -> std::io::Result<(PathBuf, PathBuf, String)> {
        let scratch = self.root.join(unique_name(what));
        let (mnt, upper, work) = (scratch.join("mnt"), scratch.join("u"), scratch.join("w"));
        for d in [&mnt, &upper, &work] {
            std::fs::create_dir_all(d)?;
        }
        let lower = self
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let opts = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        Ok((scratch, mnt, opts))
    }
}

impl Drop for Layers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `n` layers: the bottom one a busybox rootfs, each upper one a directory of 20 small files plus a file
/// that shadows one of the layer below.
pub fn make_layers(n: usize) -> CaseResult<Layers> {
    let root = std::env::temp_dir().join(unique_name(&format!("layers{n}")));
    let bottom = crate::subjects::busybox_rootfs()?;
    let mut bottom_up = Vec::new();
    for i in 0..n {
        // Short names: 64 lowerdirs must fit the one-page mount option limit.
        let d = root.join(format!("{i}"));
        if i == 0 {
            copy_tree(bottom, &d)?;
        } else {
            let own = d.join(format!("layer{i}"));
            std::fs::create_dir_all(&own)?;
            for f in 0..20 {
                std::fs::write(own.join(format!("f{f}")), format!("layer {i} file {f}\n"))?;
            }
            std::fs::create_dir_all(d.join("etc"))?;
            std::fs::write(d.join("etc/shadowed"), format!("from layer {i}\n"))?;
        }
        bottom_up.push(d);
    }
    let flat = root.join("flat");
    for d in &bottom_up {
        copy_tree(d, &flat)?;
    }
    bottom_up.reverse();
    Ok(Layers {
        root,
        dirs: bottom_up,
        flat,
    })
}

/// `cp -a src/. dst` (keeps symlinks, modes).
pub fn copy_tree(src: &Path, dst: &Path) -> CaseResult<()> {
    std::fs::create_dir_all(dst)?;
    run_checked(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(dst),
        "cp -a",
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Bind,
    Kernel,
    Strata,
    FuseOverlayfs,
}

impl Backend {
    pub const ALL: [Backend; 4] = [
        Backend::Bind,
        Backend::Kernel,
        Backend::Strata,
        Backend::FuseOverlayfs,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Backend::Bind => "bind",
            Backend::Kernel => "kernel-overlayfs",
            Backend::Strata => "strata-overlayfs",
            Backend::FuseOverlayfs => "fuse-overlayfs",
        }
    }

    /// The FUSE server binary, or why it is missing.
    pub fn fuse_binary(self) -> CaseResult<Option<PathBuf>> {
        let (name, var) = match self {
            Backend::Strata => ("strata-overlayfs", "STRATA_OVERLAYFS_BIN"),
            Backend::FuseOverlayfs => ("fuse-overlayfs", "FUSE_OVERLAYFS_BIN"),
            _ => return Ok(None),
        };
        let bin = find_binary(name, var).ok_or_else(|| {
            CaseError::Skipped(format!(
                "{name} not found (set {var}, build it, or install it)"
            ))
        })?;
        if !Path::new("/dev/fuse").exists() {
            return Err(CaseError::Skipped("/dev/fuse missing".into()));
        }
        Ok(Some(bin))
    }
}

/// One mounted rootfs (on the worker thread's namespace), unmounted on drop.
pub struct Mounted {
    pub mnt: PathBuf,
    scratch: PathBuf,
}

impl Mounted {
    /// Mount `layers` with `backend` at a fresh mount point; upper and work dirs are fresh too.
    /// Must run on the mount worker.
    pub fn mount(
        backend: Backend,
        layers: &Layers,
        fuse_bin: Option<&Path>,
    ) -> CaseResult<Mounted> {
        let (scratch, mnt, opts) = layers.scratch_mount("m")?;
        let m = Mounted {
            mnt: mnt.clone(),
            scratch,
        };
        match (backend, fuse_bin) {
            (Backend::Bind, _) => nix::mount::mount(
                Some(&layers.flat),
                &mnt,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| CaseError::failed(format!("bind mount: {e}")))?,
            (Backend::Kernel, _) => nix::mount::mount(
                Some("overlay"),
                &mnt,
                Some("overlay"),
                MsFlags::empty(),
                Some(opts.as_str()),
            )
            .map_err(|e| CaseError::failed(format!("overlay mount: {e}")))?,
            (_, Some(bin)) => {
                run_checked(
                    Command::new(bin).arg("-o").arg(&opts).arg(&mnt),
                    backend.name(),
                )?;
                if !is_mount_point(&mnt) {
                    return Err(CaseError::Skipped(format!(
                        "{} returned without mounting",
                        bin.display()
                    )));
                }
            }
            (_, None) => return Err(CaseError::failed("FUSE backend without its binary")),
        }
        Ok(m)
    }

    /// Exec /bin/true from the mounted tree (busybox picks the applet from argv[0]).
    pub fn first_exec(&self) -> CaseResult<()> {
        run_checked(
            &mut Command::new(self.mnt.join("bin/true")),
            "exec from the new root",
        )
    }
}

/// Whether `p` is the root of a mount (its device differs from its parent's).
pub fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Unmounting a FUSE mount ends its (daemonized) server; lazy so a busy mount cannot stay behind.
        if nix::mount::umount2(&self.mnt, MntFlags::empty()).is_err() {
            let _ = nix::mount::umount2(&self.mnt, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

struct MountExec {
    backend: Backend,
    n: usize,
    layers: Option<Arc<Layers>>,
    fuse_bin: Option<PathBuf>,
}

impl Case for MountExec {
    fn subject(&self) -> String {
        self.backend.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        self.fuse_bin = self.backend.fuse_binary()?;
        let layers = Arc::new(make_layers(self.n)?);
        self.layers = Some(layers);
        self.run_once().map(drop)
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let layers = self
            .layers
            .clone()
            .ok_or_else(|| CaseError::failed("not prepared"))?;
        let (backend, bin) = (self.backend, self.fuse_bin.clone());
        MountWorker::get()?.run(move || -> CaseResult<Sample> {
            let t = Instant::now();
            let m = Mounted::mount(backend, &layers, bin.as_deref())?;
            let mounted = t.elapsed();
            m.first_exec()?;
            let value = t.elapsed();
            drop(m);
            Ok(Sample {
                value,
                parts: vec![
                    ("mount".into(), mounted),
                    ("first-exec".into(), value - mounted),
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

pub fn groups(suite: Suite) -> Vec<Group> {
    let counts: &[usize] = if suite == Suite::Quick {
        &[1, 16]
    } else {
        &[1, 4, 16, 64]
    };
    counts
        .iter()
        .map(|&n| {
            let mut g = Group::new(
                Family::Rootfs,
                format!("mount-exec/layers={n}"),
                format!(
                    "Time to a usable root over {n} layer(s): mount (fresh mount point, upper and work dirs), then \
                     the first exec of /bin/true from the mounted tree until it has exited; parts: mount and \
                     first-exec. bind mounts a pre-merged copy of the layers; the FUSE servers are started by \
                     their fuse-overlayfs-compatible command line and have mounted when it returns. Mounts are made \
                     in a private mount namespace of a dedicated thread and unmounted after each sample (untimed)."
                ),
            )
            .reference("kernel-overlayfs")
            .max_samples(if suite == Suite::Quick { 8 } else { 40 });
            for b in Backend::ALL {
                g = g.case(MountExec { backend: b, n, layers: None, fuse_bin: None });
            }
            g
        })
        .chain(podman_groups(suite))
        .collect()
}

/// `podman run` on containers-storage's overlay driver, per mount program: the kernel overlay (no
/// mount_program), strata-overlayfs or fuse-overlayfs as `[storage.options.overlay] mount_program`. Each has
/// its own private podman root, as the storage driver's configuration is per root.
pub struct PodmanMount {
    backend: Backend,
    workload: PodmanWorkload,
    root: Option<crate::podman::PodmanRoot>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodmanWorkload {
    /// `/bin/true`.
    True,
    /// Small files: 200 new files written and read back, a copy-up of an image file, a read of busybox.
    Files,
}

/// The files workload; prints `files-ok` when every step worked.
const FILES_SCRIPT: &str = "mkdir /w && i=0 && while [ $i -lt 200 ]; do echo $i > /w/f$i; i=$((i+1)); done \
    && cat /w/* > /dev/null && echo appended >> /etc/group && cat /bin/busybox > /dev/null && rm -r /w \
    && echo files-ok";

impl PodmanWorkload {
    pub fn name(self) -> &'static str {
        match self {
            PodmanWorkload::True => "true",
            PodmanWorkload::Files => "files",
        }
    }
    fn argv(self) -> Vec<&'static str> {
        match self {
            PodmanWorkload::True => vec!["/bin/true"],
            PodmanWorkload::Files => vec!["/bin/sh", "-c", FILES_SCRIPT],
        }
    }
}

impl PodmanMount {
    pub fn new(backend: Backend, workload: PodmanWorkload) -> Self {
        PodmanMount {
            backend,
            workload,
            root: None,
        }
    }

    /// The mountinfo fs type the container's root must have.
    fn fs_type(&self) -> &'static str {
        match self.backend {
            Backend::Strata => "fuse.strata-overlayfs",
            Backend::FuseOverlayfs => "fuse.fuse-overlayfs",
            _ => "overlay",
        }
    }

    fn run_args(&self, argv: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = ["run", "--rm", "--network", "none"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push("--name".into());
        v.push(unique_name(&format!("podman-{}", self.backend.name())));
        v.push(crate::podman::PODMAN_IMAGE.into());
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }

    fn podman_run(&self, argv: &[&str]) -> CaseResult<String> {
        let root = self
            .root
            .as_ref()
            .ok_or_else(|| CaseError::failed("not prepared"))?;
        let args = self.run_args(argv);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        root.run(&args, &format!("podman run on {}", self.backend.name()))
    }
}

impl Case for PodmanMount {
    fn subject(&self) -> String {
        self.backend.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        let mount_program = self.backend.fuse_binary()?;
        self.root = Some(crate::podman::PodmanRoot::new(
            self.backend.name(),
            mount_program.as_deref(),
            "runc",
        )?);
        // The container's root really is on this mount program.
        let root_line = self.podman_run(&["/bin/sh", "-c", "grep ' / / ' /proc/self/mountinfo"])?;
        let fs_type = root_line
            .split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        if fs_type != Some(self.fs_type()) {
            return Err(CaseError::failed(format!(
                "the container's root is not {} but: {}",
                self.fs_type(),
                root_line.trim()
            )));
        }
        let out = self.podman_run(&self.workload.argv())?;
        if self.workload == PodmanWorkload::Files && out.trim() != "files-ok" {
            return Err(CaseError::failed(format!("files workload: {}", out.trim())));
        }
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let root = self
            .root
            .as_ref()
            .ok_or_else(|| CaseError::failed("not prepared"))?;
        let mut cmd = root.cmd();
        cmd.args(self.run_args(&self.workload.argv()));
        let what = format!("podman run on {}", self.backend.name());
        let t = Instant::now();
        crate::podman::run_with_deadline(
            &mut cmd,
            &what,
            crate::podman::PODMAN_TIMEOUT,
            root.scratch(),
        )?;
        Ok(t.elapsed().into())
    }
    fn teardown(&mut self) {
        self.root = None;
    }
    /// podman's container gets its own net namespace.
    fn quiesce(&self) -> Duration {
        super::namespaces::NET_QUIESCE
    }
}

pub const PODMAN_METHOD: &str = "Wall time of `podman run --rm --network none localhost/strata-busybox:latest \
    CMD` (podman 4 with conmon, runtime runc, cgroup manager cgroupfs) from fork+exec of podman until it has \
    returned (container created, mounted, run, removed and unmounted), on containers-storage's overlay driver \
    whose mount_program is strata-overlayfs or fuse-overlayfs (kernel-overlayfs: no mount_program, the kernel \
    overlay). Each subject has its own private podman root (graphroot on the temp dir's disk, run root and \
    libpod tmp dir on the bench's tmpfs, its own storage.conf and containers.conf), with the busybox test \
    image loaded from its docker-save archive; prepare checks the container's root has that fs type. Every \
    podman invocation has a 60 s deadline.";

/// The podman groups of the rootfs family.
pub fn podman_groups(suite: Suite) -> Vec<Group> {
    [PodmanWorkload::True, PodmanWorkload::Files]
        .into_iter()
        .map(|w| {
            let cmd = match w {
                PodmanWorkload::True => "/bin/true".to_string(),
                PodmanWorkload::Files => format!("/bin/sh -c '{FILES_SCRIPT}'"),
            };
            let mut g = Group::new(
                Family::Rootfs,
                format!("podman-run/{}", w.name()),
                format!(
                    "{} CMD: {cmd}. Mount programs: {}.",
                    PODMAN_METHOD,
                    [Backend::Strata, Backend::FuseOverlayfs]
                        .iter()
                        .map(|b| match b.fuse_binary() {
                            Ok(Some(p)) => format!("{} = {}", b.name(), p.display()),
                            _ => format!("{} not found", b.name()),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .reference("kernel-overlayfs")
            .reference("fuse-overlayfs")
            .max_samples(if suite == Suite::Quick { 8 } else { 40 });
            for b in [Backend::Kernel, Backend::Strata, Backend::FuseOverlayfs] {
                g = g.case(PodmanMount::new(b, w));
            }
            g
        })
        .collect()
}
