//! strata-overlayfs: fuse-overlayfs compatible command line (also usable as a mount helper).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use strata_overlayfs::options::IGNORED_OPTIONS;
use strata_overlayfs::{Config, sys};

// The musl builds (scripts/setup) allocate with strata-overlayfs's sys::Allocator; musl's own allocator maps
// and unmaps memory every few allocations. glibc builds keep glibc's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: strata_overlayfs::sys::Allocator = strata_overlayfs::sys::Allocator;

#[derive(Parser, Debug)]
#[command(
    name = "strata-overlayfs",
    version,
    about = "Userspace overlay filesystem with the kernel overlayfs's semantics",
    after_help = after_help()
)]
struct Args {
    /// Stay in the foreground.
    #[arg(short = 'f')]
    foreground: bool,
    /// Debug: implies -f.
    #[arg(short = 'd')]
    debug: bool,
    /// Mount options (lowerdir=L1:L2,upperdir=U,workdir=W,...); may be repeated.
    #[arg(short = 'o', action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Accepted from mount(8) helpers and ignored: -n (no mtab), -s (sloppy), -v (verbose).
    #[arg(short = 'n', hide = true)]
    no_mtab: bool,
    #[arg(short = 's', hide = true)]
    sloppy: bool,
    #[arg(short = 'v', hide = true)]
    verbose: bool,
    /// Filesystem type given by mount(8) (ignored).
    #[arg(short = 't', hide = true)]
    fstype: Option<String>,
    /// [SOURCE] MOUNTPOINT (the source, passed by mount helpers, is only a label).
    #[arg(required = true, num_args = 1..=2)]
    paths: Vec<PathBuf>,
}

fn after_help() -> String {
    let mut s = String::from(
        "Options of our own: whiteout=kernel|oci, threads=N (default: one per CPU, 2 to 4), passthrough=on|off, fsync=0|1, timeout=SECS,\n\
         squash_to_root, squash_to_uid=N, squash_to_gid=N, allow_other, default_permissions, suid/nosuid,\n\
         dev/nodev, exec/noexec, ro/rw, fsname=NAME, uidmapping=/gidmapping=DISK:SHOWN:LEN[:...] (as\n\
         fuse-overlayfs), upper_uidmapping=/upper_gidmapping=DISK:SHOWN:LEN[:...] (the upper layer only).\n\nAccepted and ignored (no meaning here): ",
    );
    s.push_str(&IGNORED_OPTIONS.join(", "));
    s
}

/// Whether `path` is already the root of a mount.
fn is_mount_root(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Ok(p)) = (std::fs::metadata(path), std::fs::metadata(path.join(".."))) else {
        return false;
    };
    m.dev() != p.dev() || m.ino() == p.ino()
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = Config::default();
    for o in &args.options {
        cfg.apply_options(o)?;
    }
    cfg.validate()?;
    let mnt = args.paths.last().cloned().context("no mountpoint given")?;
    if args.paths.len() == 2 && !args.options.iter().any(|o| o.contains("fsname=")) {
        cfg.fsname = args.paths[0].to_string_lossy().into_owned();
    }
    strata_overlayfs::server::check_mountpoint(&mnt)?;
    if is_mount_root(&mnt) {
        bail!(
            "mountpoint '{}' is in use (already a mount point)",
            mnt.display()
        );
    }
    // Open and check the layers before forking so errors reach the caller's terminal directly; the
    // server process inherits them opened.
    let ovl = strata_overlayfs::PreparedOverlay::new(&cfg)?;
    if args.foreground || args.debug {
        let server = ovl.mount(&mnt)?;
        server.join()?;
        return Ok(());
    }
    // Mount before forking: every error up to a working mount reaches the caller's terminal, and
    // the caller goes on as soon as the mount exists (requests wait in the kernel until the child
    // serves them; fuse-overlayfs's libfuse likewise returns before its session answers INIT).
    let unserved = ovl.mount_unserved(&mnt)?;
    // The server keeps no stdio; switching it before the fork lets the caller's pipes (if it reads
    // our output) end when this process exits, however late the child is scheduled.
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    match sys::fork() {
        Ok(sys::Forked::Parent(_)) => Ok(()),
        Ok(sys::Forked::Child) => {
            drop(stderr);
            let _ = nix::unistd::setsid();
            let _ = std::env::set_current_dir("/");
            // Failing here (no thread could start) unmounts: the caller then sees no mount.
            unserved.serve()?.join()?;
            Ok(())
        }
        Err(e) => {
            let _ = nix::unistd::dup2_stderr(&stderr);
            drop(unserved);
            let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
            Err(e).context("cannot fork the server process")
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "strata-overlayfs: {}",
                strata_overlayfs::errline::one_line(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
