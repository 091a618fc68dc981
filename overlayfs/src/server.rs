//! Mounting and serving: mount + serve, mount without serving (for a container's mount namespace),
//! serve an already-mounted /dev/fuse fd, stop, join, stats, and stale-mount cleanup.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Session, SessionACL};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::copyup::{STAGE_DIR, remove_tree};
use crate::fs::OverlayFs;
use crate::layers::{LayerError, LayerStack};
use crate::options::Config;
use crate::ovl::Overlay;
use crate::placement::Placement;
use crate::stats::{Counters, OpStats};

/// Why a mount could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A layer directory is unusable.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// mount(2) or /dev/fuse failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The work directory cannot be prepared.
    #[error("workdir cannot be prepared: {0}")]
    Work(Errno),
    /// The FUSE session failed.
    #[error("FUSE session failed: {0}")]
    Session(std::io::Error),
    /// Unmounting failed.
    #[error("unmount of '{0}' failed: {1}")]
    Unmount(PathBuf, Errno),
}

/// Why /dev/fuse could not be opened and mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// /dev/fuse cannot be opened.
    #[error("cannot open /dev/fuse: {0}")]
    DevFuse(Errno),
    /// The mountpoint is unusable.
    #[error("mountpoint '{0}': {1}")]
    Mountpoint(PathBuf, &'static str),
    /// mount(2) refused.
    #[error("mount of '{0}' failed: {1}")]
    Mount(PathBuf, Errno),
}

/// The kernel-side options of a FUSE mount.
#[derive(Debug, Clone)]
pub struct FuseMountOptions {
    /// allow_other.
    pub allow_other: bool,
    /// default_permissions.
    pub default_permissions: bool,
    /// Honour setuid bits (else MS_NOSUID).
    pub suid: bool,
    /// Allow devices (else MS_NODEV).
    pub dev: bool,
    /// Allow exec (else MS_NOEXEC).
    pub exec: bool,
    /// MS_RDONLY.
    pub read_only: bool,
    /// Source shown in /proc/mounts.
    pub fsname: String,
}

impl From<&Config> for FuseMountOptions {
    fn from(c: &Config) -> Self {
        FuseMountOptions {
            allow_other: c.allow_other,
            default_permissions: c.default_permissions,
            suid: c.suid,
            dev: c.dev,
            exec: c.exec,
            read_only: !c.writable(),
            fsname: c.fsname.clone(),
        }
    }
}

/// Open /dev/fuse and mount(2) it on `mountpoint` without serving it. Does no thread creation and
/// few allocations, so a forked child may call it inside a fresh mount namespace and pass the fd on.
pub fn open_and_mount_fuse(
    mountpoint: &Path,
    opts: &FuseMountOptions,
) -> Result<OwnedFd, MountError> {
    mount_fuse_fd(open_dev_fuse()?, mountpoint, opts)
}

/// Opens /dev/fuse. Separate from the mount so a process can open it while its credentials still
/// allow (the device is usually mode 0600 root) and mount it later, e.g. as root of a user namespace.
pub fn open_dev_fuse() -> Result<OwnedFd, MountError> {
    nix::fcntl::open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(MountError::DevFuse)
}

/// mount(2)s the FUSE connection `fd` (from [`open_dev_fuse`]) on `mountpoint` and returns it. The
/// mount belongs to the caller's user namespace: the ids the server reports are read in it.
pub fn mount_fuse_fd(
    fd: OwnedFd,
    mountpoint: &Path,
    opts: &FuseMountOptions,
) -> Result<OwnedFd, MountError> {
    use std::os::fd::AsRawFd;
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={}",
        fd.as_raw_fd(),
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw()
    );
    if opts.allow_other {
        data.push_str(",allow_other");
    }
    if opts.default_permissions {
        data.push_str(",default_permissions");
    }
    let mut flags = MsFlags::empty();
    if !opts.suid {
        flags |= MsFlags::MS_NOSUID;
    }
    if !opts.dev {
        flags |= MsFlags::MS_NODEV;
    }
    if !opts.exec {
        flags |= MsFlags::MS_NOEXEC;
    }
    if opts.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some(opts.fsname.as_str()),
        mountpoint,
        Some("fuse.strata-overlayfs"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| MountError::Mount(mountpoint.to_owned(), e))?;
    Ok(fd)
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    session: Option<BackgroundSession>,
    mountpoint: Option<PathBuf>,
    attached: Option<PathBuf>,
    conn: Option<u64>,
    /// The root of an attached mount (one in another mount namespace), held open so the mount's
    /// superblock — and with it the fusectl number in `conn` — stays ours until `stop` aborts it.
    pin: Option<std::fs::File>,
    counters: Arc<Counters>,
    placement: Arc<Placement>,
    ovl: Arc<Overlay>,
}

fn prepare(config: &Config) -> Result<Overlay, ServeError> {
    config.validate().map_err(|_| LayerError::NoLower)?;
    let stack = LayerStack::open(config)?;
    // The staging directory is made at the first copy-up (a mount that only reads never needs it;
    // making it was ~0.13 ms of a mount here). One left by an earlier server is cleaned now.
    let stage = match &stack.work {
        Some(w) => match crate::layers::open_subdir(w.as_fd(), OsStr::new(STAGE_DIR)) {
            Ok(stage) => {
                // Leftovers of a crashed server: never visible, just garbage.
                let sub = crate::layers::open_for_listing(&stage).map_err(ServeError::Work)?;
                for n in crate::sys::dir_names(sub.as_fd()).map_err(ServeError::Work)? {
                    let _ = remove_tree(sub.as_fd(), &n);
                }
                Some(stage)
            }
            Err(Errno::ENOENT) => {
                // Refuse a work directory we could not make it in now, not at the first write.
                nix::unistd::faccessat(
                    w,
                    ".",
                    nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(ServeError::Work)?;
                None
            }
            Err(e) => return Err(ServeError::Work(e)),
        },
        None => None,
    };
    Overlay::new(config.clone(), stack, stage).map_err(ServeError::Work)
}

fn serve(ovl: Overlay, fd: OwnedFd, mountpoint: Option<PathBuf>) -> Result<Server, ServeError> {
    let counters = Arc::new(Counters::default());
    let placement = Arc::new(Placement::default());
    let ovl = Arc::new(ovl);
    let fs = OverlayFs {
        ovl: ovl.clone(),
        stats: counters.clone(),
        placement: placement.clone(),
    };
    let acl = if ovl.cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let mut fcfg = fuser::Config::default();
    fcfg.acl = acl;
    fcfg.n_threads = Some(ovl.cfg.threads.max(1));
    fcfg.clone_fd = true;
    let session = Session::from_fd(fs, fd, acl, fcfg).map_err(ServeError::Session)?;
    let bg = session.spawn().map_err(ServeError::Session)?;
    let mut server = Server {
        session: Some(bg),
        mountpoint: None,
        attached: None,
        conn: None,
        pin: None,
        counters,
        placement,
        ovl,
    };
    if let Some(m) = mountpoint {
        server.mountpoint = Some(m.clone());
        server.attach_mountpoint(&m);
    }
    warm_cpu_features();
    Ok(server)
}

/// std's SIMD routines (the memchr in fuser's request parser) detect CPU features on first use
/// with a run of cpuid instructions, each a hypervisor exit on a VM (~8 µs here). Detecting them
/// now, while the caller is still on its way to the first request, keeps that off its latency.
fn warm_cpu_features() {
    #[cfg(target_arch = "x86_64")]
    let _ = std::arch::is_x86_feature_detected!("avx2");
}

/// Mount `config` on `mountpoint` and serve it from background threads. Returns once the mount
/// answers requests.
pub fn mount(config: Config, mountpoint: &Path) -> Result<Server, ServeError> {
    check_mountpoint(mountpoint)?;
    PreparedOverlay::new(&config)?.mount(mountpoint)
}

impl PreparedOverlay {
    /// Mount it on `mountpoint` and serve it from background threads (see [`mount`]).
    pub fn mount(self, mountpoint: &Path) -> Result<Server, ServeError> {
        self.mount_unserved(mountpoint)?.serve()
    }

    /// Mount it on `mountpoint` without serving yet: the kernel holds requests (the first being its
    /// INIT) until [`Unserved::serve`] answers them, maybe in another process after a fork.
    pub fn mount_unserved(self, mountpoint: &Path) -> Result<Unserved, ServeError> {
        let fd = open_and_mount_fuse(mountpoint, &FuseMountOptions::from(&self.0.cfg))?;
        Ok(Unserved {
            ovl: self.0,
            fd,
            mountpoint: mountpoint.to_owned(),
        })
    }
}

/// A mount of ours that no thread serves yet (see [`PreparedOverlay::mount_unserved`]). Dropping it
/// closes this process's copy of the connection; the mount stays until its last copy is closed.
#[derive(Debug)]
pub struct Unserved {
    ovl: Overlay,
    fd: OwnedFd,
    mountpoint: PathBuf,
}

impl Unserved {
    /// Serve it from background threads; on failure the mount is lazily unmounted.
    pub fn serve(self) -> Result<Server, ServeError> {
        let m = self.mountpoint;
        serve(self.ovl, self.fd, Some(m.clone())).inspect_err(|_| {
            let _ = nix::mount::umount2(&m, MntFlags::MNT_DETACH);
        })
    }
}

/// Serve an already opened and mounted /dev/fuse fd (see [`open_and_mount_fuse`]).
pub fn serve_fd(config: Config, fd: OwnedFd) -> Result<Server, ServeError> {
    PreparedOverlay::new(&config)?.serve_fd(fd)
}

/// An overlay whose layers are opened and checked and whose work dir is cleaned, not yet serving: the
/// first half of [`serve_fd`], for a caller that has time to spare before the /dev/fuse fd arrives (the
/// runtime, while the container's child mounts it).
#[derive(Debug)]
pub struct PreparedOverlay(Overlay);

impl PreparedOverlay {
    pub fn new(config: &Config) -> Result<PreparedOverlay, ServeError> {
        prepare(config).map(PreparedOverlay)
    }

    /// Serve the mounted /dev/fuse fd from background threads.
    pub fn serve_fd(self, fd: OwnedFd) -> Result<Server, ServeError> {
        serve(self.0, fd, None)
    }
}

/// An O_PATH handle on `path` (no FUSE open request), or None when it is gone. Through nix, not
/// std's `custom_flags`: std masks custom flags with O_ACCMODE, which on musl includes O_PATH, so
/// the musl builds made a real open (an OPENDIR for the server, and an open directory kept).
fn open_pin(path: &Path) -> Option<std::fs::File> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .map(std::fs::File::from)
}

/// The fusectl connection number of the file system `file` is on (its device number, as fusectl
/// writes it).
fn fuse_conn_of(file: &std::fs::File) -> Option<u64> {
    let (major, minor) = crate::sys::device_of(file).ok()?;
    Some(u64::from(minor) | (u64::from(major) << 20))
}

/// Refuse a mountpoint that is missing, not a directory, or a dead FUSE mount.
pub fn check_mountpoint(mountpoint: &Path) -> Result<(), MountError> {
    let bad = |why| MountError::Mountpoint(mountpoint.to_owned(), why);
    if let Err(Errno::ENOTCONN) = nix::sys::statvfs::statvfs(mountpoint) {
        return Err(bad("in use by a dead FUSE server (stale mount)"));
    }
    match std::fs::metadata(mountpoint) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad("not a directory")),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            Err(bad("in use by a dead FUSE server (stale mount)"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(bad("does not exist")),
        Err(_) => Err(bad("cannot be accessed")),
    }
}

/// Lazily unmount `mountpoint` if it is a FUSE mount whose server died (ENOTCONN). Returns
/// whether something was cleaned.
pub fn cleanup_stale(mountpoint: &Path) -> Result<bool, ServeError> {
    // statfs always reaches the server (stat may be answered from the attribute cache).
    match nix::sys::statvfs::statvfs(mountpoint) {
        Err(Errno::ENOTCONN) => {
            nix::mount::umount2(mountpoint, MntFlags::MNT_DETACH)
                .map_err(|e| ServeError::Unmount(mountpoint.to_owned(), e))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

impl Server {
    /// Remember where the mount is visible (for a mount in another namespace e.g.
    /// `/proc/<pid>/root` once that process has pivoted into it) so `stop` can unmount it or abort its FUSE
    /// connection. The open waits for the server's first replies: call it once the server runs.
    pub fn attach_mountpoint(&mut self, path: &Path) {
        if self.mountpoint.is_none() {
            // Another namespace's mount: nothing unmounts it here, so pin it (see `pin`).
            self.pin = open_pin(path);
            self.conn = self.pin.as_ref().and_then(fuse_conn_of);
            self.attached = Some(path.to_owned());
        } else {
            self.conn = open_pin(path).as_ref().and_then(fuse_conn_of);
        }
    }

    /// End the FUSE connection through fusectl (mounting fusectl when the host has not). `pin`, an open
    /// file on the mount, proves the connection is still this server's: fusectl names connections by the
    /// superblock's device number, which a new FUSE mount anywhere on the host may reuse once ours is
    /// gone — an abort by number after that ended a stranger's mount (a parallel test's container saw
    /// ENOTCONN).
    /// Returns whether it aborted.
    fn abort_connection(&self, pin: Option<&std::fs::File>) -> bool {
        let Some(c) = self.conn else { return false };
        if pin.and_then(fuse_conn_of) != Some(c) {
            return false;
        }
        let dir = Path::new("/sys/fs/fuse/connections");
        if !dir.join(c.to_string()).exists() {
            let _ = nix::mount::mount(
                Some("fusectl"),
                dir,
                Some("fusectl"),
                MsFlags::empty(),
                None::<&str>,
            );
        }
        std::fs::write(dir.join(c.to_string()).join("abort"), "1").is_ok()
    }

    /// Let the serving threads run on `cpus`; each moves at its next request. They start with the CPU
    /// mask of the thread that made the server (the runtime starts them pinned next to the container's
    /// child while it mounts its rootfs, then spreads them).
    pub fn set_cpus(&self, cpus: nix::sched::CpuSet) {
        self.placement.set(cpus);
    }

    /// Request counts so far.
    pub fn stats(&self) -> OpStats {
        self.counters.snapshot()
    }

    /// Number of live inodes (for memory checks).
    pub fn live_inodes(&self) -> usize {
        self.ovl.table.len()
    }

    /// Unmount (when we mounted it or know where it is), end the FUSE connection and wait for the
    /// threads.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.end()?;
        self.join()
    }

    /// [`Server::stop`] without waiting: once the connection is aborted the worker threads end at
    /// their next read, and the session's thread, detached, joins them and frees everything (that
    /// wait, each thread unmapping its 16 MiB request buffer, was a third of `strata run`'s
    /// teardown). Without an abort it waits as `stop` does.
    pub fn stop_detached(mut self) -> Result<(), ServeError> {
        if self.end()? {
            drop(self.session.take());
            return Ok(());
        }
        self.join()
    }

    /// Unmount (when we mounted it or know where it is) and abort the connection; returns whether
    /// it aborted.
    fn end(&mut self) -> Result<bool, ServeError> {
        // Held across the unmount so the abort below still reaches our own connection.
        let pin = match &self.mountpoint {
            Some(m) => open_pin(m),
            None => self.pin.take(),
        };
        if let Some(m) = self.mountpoint.take() {
            match nix::mount::umount2(&m, MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(ServeError::Unmount(m, e)),
            }
        } else if let Some(a) = self.attached.take() {
            // May be in another mount namespace (EINVAL): the abort below covers that.
            let _ = nix::mount::umount2(&a, MntFlags::MNT_DETACH);
        }
        // Ends the connection even while files are still open on a lazily unmounted mount.
        let aborted = self.abort_connection(pin.as_ref());
        drop(pin);
        Ok(aborted)
    }

    /// Wait until the kernel ends the session (unmount, abort or fd closed).
    pub fn join(mut self) -> Result<(), ServeError> {
        match self.session.take() {
            Some(s) => match s.join() {
                // A worker that was inside a read when the connection went down sees ECONNABORTED
                // instead of the usual ENODEV: after an abort about 1 stop in 1000 here, and after a
                // plain umount too (seen once in CI's musl pass). The session ended; not a failure.
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
                r => r.map_err(ServeError::Session),
            },
            None => Ok(()),
        }
    }
}
