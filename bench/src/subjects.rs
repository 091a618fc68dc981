//! What is compared: the floor (this crate's minimal clone → pivot_root → /proc → exec), the same floor
//! run by a program of its own (`strata-floor`: the floor plus the cost of being a program), strata
//! (`--fs bind|kernel|fuse`), crun, runc, and Docker and podman each with runc, crun and strata as the OCI
//! runtime — all starting /bin/true from the same busybox image,
//! with the same namespaces (pid, mnt, uts, ipc, net) and, for the runtimes, the same cgroup limits
//! (memory 256 MiB, 1 cpu, 512 pids).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use nix::sched::CloneFlags;
use oci_spec::runtime::{
    LinuxCpu, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources, Spec,
};

use crate::cases::{CaseError, CaseResult, Sample, unique_name};
use crate::sys::{self, CloneStack, FloorPlan, HolderSetup, NsHolder};

/// The namespaces every subject gets (strata's default set).
pub fn container_clone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
}

pub const MEMORY_LIMIT: i64 = 256 << 20;
pub const CPU_QUOTA_US: i64 = 100_000;
pub const CPU_PERIOD_US: u64 = 100_000;
pub const PIDS_LIMIT: i64 = 512;
pub const IMAGE: &str = "strata-busybox:latest";
/// Docker tag of this crate's own busybox rootfs, imported when the shared test image is not loaded.
pub const OWN_DOCKER_IMAGE: &str = "strata-bench-busybox:latest";

/// Find a binary: `$env_var`, else next to the current executable (target/<profile>/, also one level
/// up for test and bench executables in deps/), else PATH.
pub fn find_binary(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn require_binary(name: &str, env_var: &str) -> CaseResult<PathBuf> {
    find_binary(name, env_var).ok_or_else(|| {
        CaseError::Skipped(format!(
            "{name} not found (set {env_var}, build it, or install it on PATH)"
        ))
    })
}

/// Run `cmd` to completion, stdout/stderr captured; a non-zero exit is a failure naming its stderr.
pub fn run_checked(cmd: &mut Command, what: &str) -> CaseResult<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CaseError::failed(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(exit_failure(
            what,
            out.status,
            &String::from_utf8_lossy(&out.stderr),
        ))
    }
}

/// "WHAT exited with STATUS: <the last non-empty line of its stderr>".
fn exit_failure(what: &str, status: std::process::ExitStatus, stderr: &str) -> CaseError {
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    CaseError::failed(format!("{what} exited with {status}: {line}"))
}

/// The rootfs shared by every startup subject of this process: the busybox test image from strata's store
/// (a read-only kernel overlay of its layers, so all subjects run exactly the image Docker runs), or, when
/// the store does not have it, this crate's own busybox directory. Removed by [`cleanup`].
pub fn busybox_rootfs() -> CaseResult<&'static Path> {
    shared_rootfs().map(|r| r.path.as_path())
}

pub struct SharedRootfs {
    pub path: PathBuf,
    /// What it is, for the report.
    pub source: String,
    mounted: bool,
}

pub fn shared_rootfs() -> CaseResult<&'static SharedRootfs> {
    static ROOTFS: OnceLock<Result<SharedRootfs, String>> = OnceLock::new();
    ROOTFS
        .get_or_init(make_shared_rootfs)
        .as_ref()
        .map_err(|e| CaseError::failed(format!("busybox rootfs: {e}")))
}

/// The store's layer dirs (top first) of the busybox image, or why there are none.
pub fn image_layers() -> Result<(PathBuf, Vec<PathBuf>), String> {
    image_layers_of(IMAGE)
}

/// The store root and the lower layer directories (top first) of `image` in strata's store.
pub fn image_layers_of(image: &str) -> Result<(PathBuf, Vec<PathBuf>), String> {
    use strata_runtime::image::Store;
    let root = Store::default_root();
    // Opening a store creates it: look first so a machine without one is left alone.
    if !root.join("images").is_dir() {
        return Err(format!(
            "no strata image store at {} (scripts/setup imports the test images)",
            root.display()
        ));
    }
    let store = Store::open(&root).map_err(|e| e.to_string())?;
    let rec = store
        .get(image)
        .map_err(|e| format!("{image} not in the store at {}: {e}", root.display()))?;
    Ok((root, store.lower_dirs_top_first(&rec)))
}

/// How the startup subjects' rootfs is made, without making it.
pub fn rootfs_description() -> String {
    match image_layers() {
        Ok((root, layers)) => {
            format!(
                "{IMAGE} from strata's store at {}: a read-only kernel overlay of its {} layers",
                root.display(),
                layers.len()
            )
        }
        Err(why) => {
            format!("this crate's busybox directory (/bin/busybox and applet links), because {why}")
        }
    }
}

fn make_shared_rootfs() -> Result<SharedRootfs, String> {
    let source = rootfs_description();
    match image_layers() {
        Ok((_, layers)) => {
            let path = own_dir().join("image-rootfs");
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            let lower = layers
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let opts = format!("lowerdir={lower}");
            nix::mount::mount(
                Some("overlay"),
                &path,
                Some("overlay"),
                nix::mount::MsFlags::MS_RDONLY,
                Some(opts.as_str()),
            )
            .map_err(|e| format!("read-only overlay of {IMAGE}: {e}"))?;
            Ok(SharedRootfs {
                path,
                source,
                mounted: true,
            })
        }
        Err(_) => {
            let path = make_busybox_rootfs().map_err(|e| e.to_string())?;
            Ok(SharedRootfs {
                path,
                source,
                mounted: false,
            })
        }
    }
}

pub(crate) fn own_dir() -> PathBuf {
    std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()))
}

/// Where the runtimes keep per-container state (strata's `--state-dir` with its upper/work dirs, runc's
/// and crun's `--root`) and strata writes its phase files: a tmpfs this process mounts, as /run is on a
/// standard host. On a disk every start and teardown would also pay that disk's metadata costs (on
/// this machine kind /run is on the root ext4, mounted with online discard).
static RUN_DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();

pub(crate) fn run_dir() -> CaseResult<PathBuf> {
    RUN_DIR
        .get_or_init(|| {
            let path = own_dir().join("run");
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            nix::mount::mount(
                Some("strata-bench-run"),
                &path,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                Some("mode=0755"),
            )
            .map_err(|e| format!("mounting a tmpfs for state dirs at {}: {e}", path.display()))?;
            Ok(path)
        })
        .clone()
        .map_err(CaseError::failed)
}

pub const RUN_DIR_METHOD: &str = "State dirs (strata --state-dir, runc/crun --root) and strata's phase \
    files are on a tmpfs the bench mounts, as /run is on a standard host.";

fn make_busybox_rootfs() -> std::io::Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return Err(std::io::Error::other(
            "/bin/busybox missing (install busybox-static)",
        ));
    }
    let root = own_dir().join("rootfs");
    for d in [
        "bin",
        "proc",
        "dev",
        "sys",
        "tmp",
        "etc",
        "dev/pts",
        "dev/shm",
        "dev/mqueue",
        "sys/fs/cgroup",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    for applet in ["true", "sh", "ls", "cat", "find", "stat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("etc/hostname"), "strata-bench\n")?;
    Ok(root)
}

/// Remove what this process made (rootfs, bundles). Call once at the end of a run.
pub fn cleanup() {
    if let Ok(r) = shared_rootfs()
        && r.mounted
    {
        let _ = nix::mount::umount2(&r.path, nix::mount::MntFlags::MNT_DETACH);
    }
    if let Some(Ok(run)) = RUN_DIR.get() {
        let _ = nix::mount::umount2(run, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(own_dir());
}

/// Everything a start needs besides the subject: a mount namespace to start from, if not the host's.
#[derive(Clone, Default)]
pub struct StartEnv {
    pub mnt_ns: Option<Arc<OwnedFd>>,
}

/// A way of starting /bin/true in a container. `start` may run concurrently from several threads.
pub trait Starter: Send + Sync {
    fn start(&self) -> CaseResult<Sample>;
    /// The programs a start executes (the tool and what it runs), whose cached pages the start cases
    /// drop before the warm-up (see [`crate::page_cache`]).
    fn programs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// The file the containers' /bin/true runs, in the shared rootfs and in the image's layers.
pub fn container_true_files() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = busybox_rootfs()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    if let Ok((_, layers)) = image_layers() {
        roots.extend(layers);
    }
    roots
        .iter()
        .filter_map(|r| crate::page_cache::container_true(r))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Floor,
    /// The floor run by the `strata-floor` program, spawned and reaped as the runtimes are.
    FloorExec,
    StrataBind,
    StrataKernel,
    StrataFuse,
    Crun,
    Runc,
    /// `docker run --runtime runc` (Docker's default runtime; the subject was called `docker` before).
    DockerRunc,
    DockerCrun,
    DockerStrata,
    PodmanRunc,
    PodmanCrun,
    PodmanStrata,
}

impl Subject {
    pub const ALL: [Subject; 13] = [
        Subject::Floor,
        Subject::FloorExec,
        Subject::StrataBind,
        Subject::StrataKernel,
        Subject::StrataFuse,
        Subject::Crun,
        Subject::Runc,
        Subject::DockerRunc,
        Subject::DockerCrun,
        Subject::DockerStrata,
        Subject::PodmanRunc,
        Subject::PodmanCrun,
        Subject::PodmanStrata,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Subject::Floor => "floor",
            Subject::FloorExec => "floor-exec",
            Subject::StrataBind => "strata-bind",
            Subject::StrataKernel => "strata-kernel",
            Subject::StrataFuse => "strata-fuse",
            Subject::Crun => "crun",
            Subject::Runc => "runc",
            Subject::DockerRunc => "docker-runc",
            Subject::DockerCrun => "docker-crun",
            Subject::DockerStrata => "docker-strata",
            Subject::PodmanRunc => "podman-runc",
            Subject::PodmanCrun => "podman-crun",
            Subject::PodmanStrata => "podman-strata",
        }
    }

    /// The name this subject had in results written before it was renamed (`compare` matches on it).
    pub fn legacy_name(name: &str) -> Option<&'static str> {
        (name == "docker-runc").then_some("docker")
    }

    /// Set up the subject (untimed) for starts from `env`; `Skipped` when its tool is missing.
    pub fn prepare(self, env: &StartEnv) -> CaseResult<Arc<dyn Starter>> {
        Ok(match self {
            Subject::Floor => {
                let rootfs = busybox_rootfs()?;
                Arc::new(Floor {
                    plan: FloorPlan::new(rootfs, "/bin/true").map_err(CaseError::failed)?,
                    env: env.clone(),
                })
            }
            Subject::FloorExec => Arc::new(FloorExec {
                bin: floor_binary()?,
                rootfs: busybox_rootfs()?.to_path_buf(),
                env: env.clone(),
            }),
            Subject::StrataBind => strata("bind", env, &[])?,
            Subject::StrataKernel => strata("kernel", env, &[])?,
            Subject::StrataFuse => strata("fuse", env, &[])?,
            Subject::Crun | Subject::Runc => {
                let name = self.name();
                let bin = require_binary(
                    name,
                    if self == Subject::Crun {
                        "CRUN_BIN"
                    } else {
                        "RUNC_BIN"
                    },
                )?;
                let bundle = own_dir().join(unique_name(&format!("{name}-bundle")));
                write_bundle(&bundle, busybox_rootfs()?)?;
                // crun refuses a hybrid cgroup host unless cgroup2 at /sys/fs/cgroup/unified is unmounted in
                // its mount namespace; it then starts from a private namespace without it.
                let holder = if self == Subject::Crun && env.mnt_ns.is_none() {
                    Some(Arc::new(crun_mount_ns(&[])?))
                } else {
                    None
                };
                let mnt_ns = match (&holder, &env.mnt_ns) {
                    (Some(h), _) => Some(Arc::new(h.ns_fd("mnt").map_err(CaseError::failed)?)),
                    (None, ns) => ns.clone(),
                };
                Arc::new(Oci {
                    bin,
                    bundle,
                    state: run_dir()?.join(unique_name(&format!("{name}-state"))),
                    runc: self == Subject::Runc,
                    mnt_ns,
                    _holder: holder,
                })
            }
            Subject::DockerRunc | Subject::DockerCrun | Subject::DockerStrata => {
                if env.mnt_ns.is_some() {
                    return Err(CaseError::Skipped(
                        "Docker starts containers from dockerd's mount namespace, not the client's"
                            .into(),
                    ));
                }
                let runtime = match self {
                    Subject::DockerRunc => "runc",
                    Subject::DockerCrun => "crun",
                    _ => "strata",
                };
                let bin = require_binary("docker", "DOCKER_BIN")?;
                let runtimes = docker_runtimes(&bin)?;
                if !runtimes.iter().any(|r| r == runtime) {
                    return Err(CaseError::Skipped(format!(
                        "the Docker daemon has no runtime `{runtime}` registered (it has {}; \
                         scripts/docker-up starts one with strata and crun)",
                        runtimes.join(", ")
                    )));
                }
                let image = docker_image(&bin)?;
                Arc::new(Docker {
                    bin,
                    image,
                    runtime,
                })
            }
            Subject::PodmanRunc | Subject::PodmanCrun | Subject::PodmanStrata => {
                let runtime = podman_runtime(self)?;
                let root =
                    crate::podman::PodmanRoot::new(self.name(), None, &runtime.to_string_lossy())?;
                Arc::new(crate::podman::Podman {
                    root,
                    name: self.name(),
                    mnt_ns: env.mnt_ns.clone(),
                })
            }
        })
    }
}

/// The strata binary the strata subjects run, once it is known to implement `strata run`.
pub fn strata_binary() -> CaseResult<PathBuf> {
    let bin = require_binary("strata", "STRATA_BIN")?;
    // A strata binary without the run subcommand (e.g. an early skeleton) is not the subject.
    run_checked(
        Command::new(&bin).args(["run", "--help"]),
        "strata run --help",
    )
    .map_err(|e| {
        CaseError::Skipped(format!(
            "{} does not implement `strata run` ({e})",
            bin.display()
        ))
    })?;
    Ok(bin)
}

/// `strata run --fs FS [EXTRA…]` of /bin/true, as the strata subjects start it (`extra` goes before
/// `--fs`, e.g. `--security-opt seccomp=unconfined`).
pub fn strata(
    fs: &'static str,
    env: &StartEnv,
    extra: &'static [&'static str],
) -> CaseResult<Arc<dyn Starter>> {
    Ok(Arc::new(Strata {
        bin: strata_binary()?,
        fs,
        extra,
        env: env.clone(),
        state: run_dir()?.join(unique_name("state")),
    }))
}

/// The stdout of `bin --state-dir TMP run --image IMAGE EXTRA --fs kernel --rm -- CMD`, for a check of
/// what a subject's container sees before it is measured; a failed run is the case's error.
pub fn strata_kernel_output(bin: &Path, extra: &[&str], cmd: &[&str]) -> CaseResult<String> {
    let state = run_dir()?.join(unique_name("check"));
    let out = Command::new(bin)
        .arg("--state-dir")
        .arg(&state)
        .args(["run", "--image", IMAGE])
        .args(extra)
        .args(["--fs", "kernel", "--rm", "--"])
        .args(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CaseError::failed(format!("strata run: {e}")))?;
    let _ = std::fs::remove_dir_all(&state);
    if !out.status.success() {
        return Err(CaseError::failed(format!(
            "strata run … {} exited with {}: {}",
            cmd.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A namespace holder for crun (and for the scaling cases' extra mounts): private mount namespace, every
/// mount a slave of the host's, cgroup2 at /sys/fs/cgroup/unified unmounted on hybrid hosts, and a tmpfs on
/// each of `extra_mounts`.
pub fn crun_mount_ns(extra_mounts: &[PathBuf]) -> CaseResult<NsHolder> {
    // The namespace is a copy of the host's, and on a host whose mounts are private nothing mounted
    // later reaches it: the shared rootfs and the state-dir tmpfs (each mounted by the first case that
    // needs it) must exist first. Run alone, crun kept its state on the disk beneath the tmpfs, and
    // scaling/mounts' first group failed without the rootfs.
    busybox_rootfs()?;
    run_dir()?;
    let mut setup = HolderSetup {
        make_rslave: true,
        ..Default::default()
    };
    if crate::meta::cgroup_mode() == "hybrid" {
        setup.umount.push(c"/sys/fs/cgroup/unified".to_owned());
    }
    for m in extra_mounts {
        setup.tmpfs_at.push(
            std::ffi::CString::new(m.as_os_str().as_encoded_bytes()).map_err(CaseError::failed)?,
        );
    }
    NsHolder::spawn(CloneFlags::CLONE_NEWNS, &setup).map_err(CaseError::failed)
}

thread_local! {
    static STACK: std::cell::RefCell<CloneStack> = std::cell::RefCell::new(CloneStack::default());
}

struct Floor {
    plan: Box<FloorPlan>,
    env: StartEnv,
}

impl Starter for Floor {
    fn start(&self) -> CaseResult<Sample> {
        let t = Instant::now();
        STACK
            .with_borrow_mut(|stack| {
                sys::floor_run(
                    stack,
                    &self.plan,
                    container_clone_flags(),
                    self.env.mnt_ns.as_ref().map(|f| f.as_fd()),
                )
            })
            .map_err(CaseError::failed)?;
        Ok(t.elapsed().into())
    }
}

/// This thread in the mount namespace `ns` (when given) until the guard is dropped; see [`sys::InMountNs`].
pub(crate) fn in_mount_ns(ns: Option<&Arc<OwnedFd>>) -> CaseResult<Option<sys::InMountNs>> {
    ns.map(|fd| sys::InMountNs::enter(fd.as_fd()))
        .transpose()
        .map_err(CaseError::failed)
}

/// The `strata-floor` program the floor-exec subject runs (next to strata-bench, or `STRATA_FLOOR_BIN`).
pub fn floor_binary() -> CaseResult<PathBuf> {
    require_binary("strata-floor", "STRATA_FLOOR_BIN")
}

/// The floor once, in this process, then return: all the `strata-floor` program does.
pub fn floor_once(rootfs: &Path) -> Result<(), sys::SysError> {
    let plan = FloorPlan::new(rootfs, "/bin/true")?;
    sys::floor_run(
        &mut CloneStack::default(),
        &plan,
        container_clone_flags(),
        None,
    )
}

struct FloorExec {
    bin: PathBuf,
    rootfs: PathBuf,
    env: StartEnv,
}

impl Starter for FloorExec {
    fn programs(&self) -> Vec<PathBuf> {
        vec![self.bin.clone()]
    }
    fn start(&self) -> CaseResult<Sample> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(&self.rootfs);
        // As strata: started in the held mount namespace, of which its clone makes the container's copy.
        let _ns = in_mount_ns(self.env.mnt_ns.as_ref())?;
        let t = Instant::now();
        run_checked(&mut cmd, "strata-floor")?;
        Ok(t.elapsed().into())
    }
}

struct Strata {
    bin: PathBuf,
    fs: &'static str,
    extra: &'static [&'static str],
    env: StartEnv,
    state: PathBuf,
}

impl Strata {
    fn command(&self, phases: &Path) -> CaseResult<Command> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--state-dir")
            .arg(&self.state)
            .env("STRATA_PHASES", phases)
            .arg("run");
        if self.fs == "bind" {
            cmd.arg("--rootfs").arg(busybox_rootfs()?);
        } else {
            cmd.args(["--image", IMAGE]);
        }
        cmd.args(self.extra).args([
            "--fs",
            self.fs,
            "--rm",
            "--memory",
            "256m",
            "--cpus",
            "1",
            "--pids",
            "512",
            "--",
            "/bin/true",
        ]);
        Ok(cmd)
    }
}

impl Starter for Strata {
    fn programs(&self) -> Vec<PathBuf> {
        vec![self.bin.clone()]
    }
    fn start(&self) -> CaseResult<Sample> {
        let phases = run_dir()?.join(unique_name("phases.json"));
        let mut cmd = self.command(&phases)?;
        let _ns = in_mount_ns(self.env.mnt_ns.as_ref())?;
        // One clock for the sample and its parts: strata's phases are CLOCK_MONOTONIC, as Instant is.
        let launched = sys::now_ns();
        let r = run_checked(&mut cmd, &format!("strata run --fs {}", self.fs));
        let reaped = sys::now_ns();
        let value = std::time::Duration::from_nanos(reaped.saturating_sub(launched));
        r?;
        let (parts, peak_rss) = crate::phases::read_phases(&phases, (launched, reaped));
        let _ = std::fs::remove_file(&phases);
        Ok(Sample {
            value,
            parts,
            metrics: peak_rss
                .map(|b| ("peak_rss_bytes".to_string(), b as f64))
                .into_iter()
                .collect(),
        })
    }
}

/// An OCI bundle starting /bin/true with the subjects' namespaces and limits.
fn write_bundle(bundle: &Path, rootfs: &Path) -> CaseResult<()> {
    std::fs::create_dir_all(bundle)?;
    let mut spec = Spec::default();
    if let Some(p) = spec.process_mut() {
        p.set_args(Some(vec!["/bin/true".into()]));
        p.set_terminal(Some(false));
    }
    if let Some(r) = spec.root_mut() {
        r.set_path(rootfs.to_path_buf());
        r.set_readonly(Some(true));
    }
    spec.set_hostname(Some("strata-bench".into()));
    if let Some(l) = spec.linux_mut() {
        let ns = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Network,
        ];
        l.set_namespaces(Some(
            ns.iter()
                .map(|t| {
                    let mut n = LinuxNamespace::default();
                    n.set_typ(*t);
                    n
                })
                .collect(),
        ));
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(MEMORY_LIMIT));
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some(CPU_QUOTA_US));
        cpu.set_period(Some(CPU_PERIOD_US));
        let mut pids = LinuxPids::default();
        pids.set_limit(PIDS_LIMIT);
        let mut res = l
            .resources()
            .clone()
            .unwrap_or_else(LinuxResources::default);
        res.set_memory(Some(mem));
        res.set_cpu(Some(cpu));
        res.set_pids(Some(pids));
        l.set_resources(Some(res));
    }
    spec.save(bundle.join("config.json"))
        .map_err(CaseError::failed)
}

struct Oci {
    bin: PathBuf,
    bundle: PathBuf,
    state: PathBuf,
    runc: bool,
    mnt_ns: Option<Arc<OwnedFd>>,
    _holder: Option<Arc<NsHolder>>,
}

impl Starter for Oci {
    fn programs(&self) -> Vec<PathBuf> {
        vec![self.bin.clone()]
    }
    fn start(&self) -> CaseResult<Sample> {
        let id = unique_name(if self.runc { "runc" } else { "crun" });
        let prog = if self.runc { "runc" } else { "crun" };
        let cmd = |args: &[&str]| {
            let mut c = Command::new(&self.bin);
            c.arg("--root").arg(&self.state).args(args);
            c
        };
        let bundle = self.bundle.to_string_lossy().into_owned();
        let _ns = in_mount_ns(self.mnt_ns.as_ref())?;
        let t = Instant::now();
        let run = run_checked(
            &mut cmd(&["run", "--bundle", &bundle, &id]),
            &format!("{prog} run"),
        );
        let del = run_checked(
            &mut cmd(&["delete", "--force", &id]),
            &format!("{prog} delete"),
        );
        let value = t.elapsed();
        run?;
        del?;
        Ok(value.into())
    }
}

fn docker_image(bin: &Path) -> CaseResult<String> {
    static IMPORT: Mutex<()> = Mutex::new(());
    let _guard = IMPORT.lock().unwrap_or_else(|p| p.into_inner());
    let has = |image: &str| {
        run_checked(
            Command::new(bin).args(["image", "inspect", image]),
            "docker image inspect",
        )
        .is_ok()
    };
    if has(IMAGE) {
        return Ok(IMAGE.into());
    }
    if !has(OWN_DOCKER_IMAGE) {
        // The same busybox rootfs the other subjects use, as a one-layer image.
        let rootfs = busybox_rootfs()?;
        let tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| CaseError::failed(format!("tar: {e}")))?;
        let mut import = Command::new(bin);
        import
            .args(["import", "-", OWN_DOCKER_IMAGE])
            .stdin(tar.stdout.ok_or_else(|| CaseError::failed("tar stdout"))?);
        let out = import
            .output()
            .map_err(|e| CaseError::failed(format!("docker import: {e}")))?;
        if !out.status.success() {
            return Err(CaseError::failed(format!(
                "docker import: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(OWN_DOCKER_IMAGE.into())
}

struct Docker {
    bin: PathBuf,
    image: String,
    runtime: &'static str,
}

/// The runtimes the Docker daemon knows (`docker info` .Runtimes); `Skipped` when no daemon answers.
fn docker_runtimes(bin: &Path) -> CaseResult<Vec<String>> {
    let out = Command::new(bin)
        .args(["info", "--format", "{{json .Runtimes}}"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CaseError::Skipped(format!("docker info: {e}")))?;
    if !out.status.success() {
        return Err(CaseError::Skipped(format!(
            "Docker daemon not usable (docker info: {}; scripts/docker-up starts one)",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| CaseError::failed(format!("docker info .Runtimes: {e}")))?;
    Ok(v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default())
}

impl Starter for Docker {
    fn programs(&self) -> Vec<PathBuf> {
        // The client, the shim containerd starts per container, and the runtime it runs.
        let mut p = vec![self.bin.clone()];
        p.extend(find_binary(
            "containerd-shim-runc-v2",
            "CONTAINERD_SHIM_BIN",
        ));
        match self.runtime {
            "runc" => p.extend(find_binary("runc", "RUNC_BIN")),
            "crun" => {
                // crun-hybrid (on hybrid hosts) and crun itself.
                p.extend(podman_runtime(Subject::PodmanCrun).ok());
                p.extend(find_binary("crun", "CRUN_BIN"));
            }
            _ => p.extend(find_binary("strata", "STRATA_BIN")),
        }
        p
    }
    fn start(&self) -> CaseResult<Sample> {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "run",
            "--rm",
            "--runtime",
            self.runtime,
            "--network",
            "none",
        ])
        .args(ENGINE_LIMITS)
        .args([
            "--name",
            &unique_name(&format!("docker-{}", self.runtime)),
            &self.image,
            "/bin/true",
        ]);
        let t = Instant::now();
        // With a deadline: a daemon that stops answering (seen once under 16 concurrent runs) fails
        // this subject instead of hanging the suite.
        crate::podman::run_with_deadline(
            &mut cmd,
            &format!("docker run --runtime {}", self.runtime),
            DOCKER_TIMEOUT,
            &std::env::temp_dir(),
        )?;
        Ok(t.elapsed().into())
    }
}

/// How long one `docker run` may take before it is killed and its subject fails (normal: well under 1 s;
/// under 64 concurrent starts a few seconds).
const DOCKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The limits every docker and podman start gets: the same as the runtimes' (256 MiB, 1 cpu, 512 pids).
pub(crate) const ENGINE_LIMITS: [&str; 6] =
    ["--memory", "256m", "--cpus", "1", "--pids-limit", "512"];

/// crun for podman on a hybrid cgroup host: scripts/crun-hybrid as scripts/setup installs it.
pub const CRUN_HYBRID: &str = "/usr/local/libexec/strata/crun-hybrid";

/// The OCI runtime binary a podman subject is given (`podman --runtime PATH`), or why it is missing.
pub fn podman_runtime(subject: Subject) -> CaseResult<PathBuf> {
    match subject {
        Subject::PodmanRunc => require_binary("runc", "RUNC_BIN"),
        Subject::PodmanStrata => require_binary("strata", "STRATA_BIN"),
        Subject::PodmanCrun => {
            let hybrid = std::env::var_os("CRUN_HYBRID_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(CRUN_HYBRID));
            if crate::meta::cgroup_mode() != "hybrid" {
                return require_binary("crun", "CRUN_BIN");
            }
            if hybrid.is_file() {
                Ok(hybrid)
            } else {
                Err(CaseError::Skipped(format!(
                    "{} missing: crun refuses this hybrid cgroup host without it (scripts/setup installs \
                     scripts/crun-hybrid there; CRUN_HYBRID_BIN selects another)",
                    hybrid.display()
                )))
            }
        }
        other => Err(CaseError::failed(format!(
            "{} is not a podman subject",
            other.name()
        ))),
    }
}
