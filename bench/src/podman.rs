//! A private podman for the bench: its own containers-storage root (graphroot under this process's
//! temp dir), run root and libpod tmp dir on the bench's tmpfs, its own containers.conf and storage.conf,
//! the busybox test image loaded from its `docker save` archive. Nothing of the user's podman is read or
//! written; everything (containers, images, mounts, dirs) goes when the value is dropped.
//!
//! Every podman invocation runs under a deadline and is killed (by its pid) when it passes it, so a podman
//! that waits forever is a failure with a reason instead of a hung run.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

use crate::cases::{CaseError, CaseResult, Sample, unique_name};
use crate::subjects::{ENGINE_LIMITS, Starter};

/// The image's name once `podman load` has read the archive.
pub const PODMAN_IMAGE: &str = "localhost/strata-busybox:latest";
/// Deadline of one podman invocation (set-up, starts, clean-up).
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// The docker-save archive of the busybox test image (scripts/make-images), or why it is missing.
pub fn busybox_archive() -> CaseResult<PathBuf> {
    let dir = std::env::var_os("STRATA_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/strata/images"));
    let tar = dir.join("busybox.tar");
    if tar.is_file() {
        Ok(tar)
    } else {
        Err(CaseError::Skipped(format!(
            "{} missing (scripts/make-images or scripts/setup writes it; STRATA_IMAGES selects the dir)",
            tar.display()
        )))
    }
}

/// Run `cmd` (stdin null, stdout and stderr into files under `scratch`) until it exits or `limit` has
/// passed; then it is killed with SIGKILL. Files instead of pipes: a helper the command leaves behind
/// (conmon, a FUSE server) that keeps its stdio open cannot make the caller wait for it.
/// Returns stdout; a non-zero exit or the deadline is a failure naming `what` and the end of stderr.
pub fn run_with_deadline(
    cmd: &mut Command,
    what: &str,
    limit: Duration,
    scratch: &Path,
) -> CaseResult<String> {
    let base = scratch.join(unique_name("out"));
    let (out_path, err_path) = (base.with_extension("stdout"), base.with_extension("stderr"));
    let out = std::fs::File::create(&out_path)?;
    let err = std::fs::File::create(&err_path)?;
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| CaseError::failed(format!("{what}: {e}")));
    let result = spawned.and_then(|mut child| {
        let pid = Pid::from_raw(child.id() as i32);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        // The child is reaped only after the watchdog has stopped: until then its pid cannot be reused,
        // so the kill can only hit the process started here.
        let watchdog = std::thread::spawn(move || {
            matches!(
                done_rx.recv_timeout(limit),
                Err(mpsc::RecvTimeoutError::Timeout)
            ) && kill(pid, Signal::SIGKILL).is_ok()
        });
        let exited = loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r,
            }
        };
        let _ = done_tx.send(());
        let killed = watchdog.join().unwrap_or(false);
        let status = child.wait()?;
        exited.map_err(|e| CaseError::failed(format!("{what}: waitid: {e}")))?;
        Ok((status, killed))
    });
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let (status, killed) = result?;
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    if killed {
        return Err(CaseError::failed(format!(
            "{what} did not finish within {} s and was killed; last stderr line: {last}",
            limit.as_secs()
        )));
    }
    if !status.success() {
        return Err(CaseError::failed(format!(
            "{what} exited with {status}: {last}"
        )));
    }
    Ok(stdout)
}

/// Whether `name` is an executable file on PATH.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

pub struct PodmanRoot {
    /// graphroot, configs, events log (on disk, as a standard host's /var/lib/containers).
    dir: PathBuf,
    /// runroot and libpod's tmp dir (exit files), on the bench's tmpfs like a standard host's /run.
    run: PathBuf,
    storage_conf: PathBuf,
    containers_conf: PathBuf,
    /// The OCI runtime podman is told to use (`podman --runtime`).
    runtime: String,
}

impl PodmanRoot {
    /// A fresh private podman whose OCI runtime is `runtime` (a name podman knows, or a path) and whose
    /// overlay driver mounts with `mount_program` (None: the kernel overlay), with the busybox test image
    /// loaded. `Skipped` when podman, conmon or the image archive are missing.
    pub fn new(what: &str, mount_program: Option<&Path>, runtime: &str) -> CaseResult<PodmanRoot> {
        for tool in ["podman", "conmon"] {
            if !on_path(tool) {
                return Err(CaseError::Skipped(format!(
                    "{tool} not installed (scripts/setup installs podman and conmon)"
                )));
            }
        }
        let archive = busybox_archive()?;
        let name = unique_name(&format!("podman-{what}"));
        let dir = crate::subjects::own_dir().join(&name);
        // Short: podman refuses a --runroot longer than 50 characters, and the `podman container cleanup`
        // conmon runs when the container exits gets it as --runroot. A cleanup that fails leaves the
        // container "stopped" instead of "exited", and `podman run` waits its 20 s conmon timeout.
        static N: AtomicUsize = AtomicUsize::new(0);
        let run =
            crate::subjects::run_dir()?.join(format!("p{}", N.fetch_add(1, Ordering::Relaxed)));
        let runroot = run.join("s");
        if runroot.as_os_str().len() > 50 {
            return Err(CaseError::failed(format!(
                "podman's run root {} is longer than the 50 characters podman accepts (shorten TMPDIR)",
                runroot.display()
            )));
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&run)?;
        let storage_conf = dir.join("storage.conf");
        let containers_conf = dir.join("containers.conf");
        let root = PodmanRoot {
            dir,
            run,
            storage_conf,
            containers_conf,
            runtime: runtime.to_string(),
        };
        let mut storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            root.dir.join("storage").display(),
            runroot.display()
        );
        if let Some(p) = mount_program {
            storage.push_str(&format!(
                "[storage.options.overlay]\nmount_program = \"{}\"\n",
                p.display()
            ));
        }
        std::fs::write(&root.storage_conf, storage)?;
        // cgroupfs and a file events log: no systemd on this machine kind. podman's default ulimits (nofile
        // 1048576, nproc max) are above what this process may raise to, so ask for what it has.
        // static_dir (libpod's database) is left at its default, graphroot/libpod: that cleanup process
        // gets --root but not the static dir, and with the database elsewhere it finds no container (the
        // same 20 s wait).
        let (nofile_soft, nofile_hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
        std::fs::write(
            &root.containers_conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={}:{}\", \"nproc=4096:4096\"]\n\
                 netns = \"none\"\n\
                 [engine]\nruntime = \"{runtime}\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\nevents_logfile_path = \"{}\"\n\
                 tmp_dir = \"{}\"\n\
                 [network]\nnetwork_config_dir = \"{}\"\n",
                nofile_soft.min(nofile_hard),
                nofile_hard,
                root.dir.join("events.log").display(),
                root.run.join("t").display(),
                root.dir.join("networks").display(),
            ),
        )?;
        let loaded = root.run(
            &["load", "-q", "-i", &archive.to_string_lossy()],
            "podman load",
        )?;
        if !loaded.contains("strata-busybox:latest") {
            return Err(CaseError::failed(format!(
                "podman load of {} did not load strata-busybox:latest: {}",
                archive.display(),
                loaded.trim()
            )));
        }
        Ok(root)
    }

    /// A podman command on this private root (`podman --runtime R`; arguments follow).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("CONTAINERS_CONF", &self.containers_conf)
            .env_remove("CONTAINER_HOST")
            .current_dir(&self.dir)
            .args(["--runtime", &self.runtime]);
        c
    }

    /// Where a command's stdout/stderr files go (tmpfs).
    pub fn scratch(&self) -> &Path {
        &self.run
    }

    /// `podman ARGS` under the deadline; its stdout.
    pub fn run(&self, args: &[&str], what: &str) -> CaseResult<String> {
        run_with_deadline(self.cmd().args(args), what, PODMAN_TIMEOUT, self.scratch())
    }

    /// Mount points under this root (deepest first).
    fn own_mounts(&self) -> Vec<PathBuf> {
        strata_runtime::hostinfo::mounts_under(&[&self.dir, &self.run])
    }
}

impl Drop for PodmanRoot {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"], "podman rm");
        let _ = self.run(&["rmi", "-af"], "podman rmi");
        for m in self.own_mounts() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

/// The podman-R startup subjects: `podman run --rm` of /bin/true on a private root.
pub(crate) struct Podman {
    pub(crate) root: PodmanRoot,
    pub(crate) name: &'static str,
    pub(crate) mnt_ns: Option<Arc<OwnedFd>>,
}

impl Starter for Podman {
    fn programs(&self) -> Vec<std::path::PathBuf> {
        let subject = match self.name {
            "podman-runc" => crate::subjects::Subject::PodmanRunc,
            "podman-crun" => crate::subjects::Subject::PodmanCrun,
            _ => crate::subjects::Subject::PodmanStrata,
        };
        ["podman", "conmon"]
            .iter()
            .filter_map(|t| crate::subjects::find_binary(t, ""))
            .chain(crate::subjects::podman_runtime(subject).ok())
            .collect()
    }
    fn start(&self) -> CaseResult<Sample> {
        let mut cmd = self.root.cmd();
        cmd.args(["run", "--rm", "--network", "none"])
            .args(ENGINE_LIMITS)
            .args(["--name", &unique_name(self.name), PODMAN_IMAGE, "/bin/true"]);
        let what = format!("{} run", self.name);
        let _ns = crate::subjects::in_mount_ns(self.mnt_ns.as_ref())?;
        let t = Instant::now();
        run_with_deadline(&mut cmd, &what, PODMAN_TIMEOUT, self.root.scratch())?;
        Ok(t.elapsed().into())
    }
}
