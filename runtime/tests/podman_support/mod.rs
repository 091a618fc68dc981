//! A private podman for one test: its own containers-storage root, run root, libpod tmp dir and
//! containers.conf, so tests run in parallel with each other and with anyone else's podman; all of it is
//! removed (containers, storage, mounts) when the value is dropped. Needs root, podman, conmon and runc.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The docker-save archive of the busybox test image that scripts/make-images writes.
pub fn busybox_archive() -> PathBuf {
    let dir = std::env::var_os("STRATA_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/strata/images"));
    let tar = dir.join("busybox.tar");
    assert!(
        tar.is_file(),
        "{} is missing: run scripts/make-images (or scripts/setup), or set STRATA_IMAGES",
        tar.display()
    );
    tar
}

/// strata-overlayfs built from this tree (next to the strata binary under test).
pub fn strata_overlayfs() -> PathBuf {
    let strata = Path::new(env!("CARGO_BIN_EXE_strata"));
    let bin = strata.with_file_name("strata-overlayfs");
    assert!(
        bin.is_file(),
        "{} is missing: build it from this tree (cargo build -p strata-overlayfs)",
        bin.display()
    );
    bin
}

fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed (scripts/setup installs podman, conmon, runc)"
    );
}

pub struct Podman {
    /// Storage, run root, configs and build contexts.
    pub dir: tempfile::TempDir,
    /// libpod's tmp dir (exit files, alive lock). On a tmpfs: with it under an ext4 /tmp, podman 4.3
    /// did not see conmon's exit file and waited its 20 s conmon timeout on every attached run.
    tmp_dir: PathBuf,
    storage_conf: PathBuf,
    containers_conf: PathBuf,
}

impl Podman {
    /// `mount_program`: the containers-storage overlay driver's FUSE program (None: kernel overlay).
    /// `runtime`: the OCI runtime podman uses (a name podman knows, or a path).
    pub fn new(mount_program: Option<&Path>, runtime: &str) -> Podman {
        assert!(
            nix::unistd::geteuid().is_root(),
            "podman tests need root (private containers-storage with mounts)"
        );
        for tool in ["podman", "conmon"] {
            require_tool(tool);
        }
        let name = format!(
            "stk-podman-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new().prefix(&name).tempdir().unwrap();
        let tmp_dir = Path::new("/run").join(&name);
        std::fs::create_dir_all(&tmp_dir).unwrap();
        let d = dir.path();
        let storage_conf = d.join("storage.conf");
        let mut storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            d.join("storage").display(),
            d.join("run").display()
        );
        if let Some(p) = mount_program {
            storage.push_str(&format!(
                "[storage.options.overlay]\nmount_program = \"{}\"\n",
                p.display()
            ));
        }
        std::fs::write(&storage_conf, storage).unwrap();
        // static_dir stays at its default under graphroot: conmon's exit command (`podman container
        // cleanup`) gets --root but not the static dir, and with it elsewhere cleanup opened another
        // database, never marked the container exited, and every run waited podman's 20 s conmon timeout.
        // cgroupfs + file events: no systemd here (cgroups v1 hybrid). The ulimits: podman's defaults
        // (nofile 1048576, nproc = max) are above what this process may raise to without
        // CAP_SYS_RESOURCE, and the runtime's setrlimit fails; so ask for what we have.
        let (nofile_soft, nofile_hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let containers_conf = d.join("containers.conf");
        std::fs::write(
            &containers_conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={}:{}\", \"nproc=4096:4096\"]\n\
                 netns = \"none\"\n\
                 [engine]\nruntime = \"{runtime}\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\nevents_logfile_path = \"{}\"\n\
                 tmp_dir = \"{}\"\nvolume_path = \"{}\"\n\
                 [network]\nnetwork_config_dir = \"{}\"\n",
                nofile_soft.min(nofile_hard),
                nofile_hard,
                d.join("events.log").display(),
                tmp_dir.display(),
                d.join("volumes").display(),
                d.join("networks").display(),
            ),
        )
        .unwrap();
        Podman {
            dir,
            tmp_dir,
            storage_conf,
            containers_conf,
        }
    }

    /// A podman command on this private root.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("CONTAINERS_CONF", &self.containers_conf)
            .env_remove("CONTAINER_HOST")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Run podman with `args`; the output whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawn podman")
    }

    /// Run podman with `args`; its stdout, or a panic naming the invocation and its stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman load` the busybox test image (as localhost/strata-busybox:latest).
    pub fn load_busybox(&self) {
        let tar = busybox_archive();
        let out = self.ok(&["load", "-q", "-i", tar.to_str().unwrap()]);
        assert!(out.contains("strata-busybox:latest"), "podman load: {out}");
    }

    /// Whatever is mounted under this podman's directories (deepest first).
    fn own_mounts(&self) -> Vec<PathBuf> {
        strata_runtime::hostinfo::mounts_under(&[self.dir.path(), &self.tmp_dir])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.output(&["rm", "-af", "-t", "0"]);
        // The private root's equivalent of `podman system reset` (which would also touch networks):
        // images and layers go, then the whole root with the tempdir.
        let _ = self.output(&["rmi", "-af"]);
        for m in self.own_mounts() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.tmp_dir);
    }
}
