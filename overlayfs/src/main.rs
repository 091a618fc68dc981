//! strata-overlayfs: fuse-overlayfs compatible command line (also usable as a mount helper).

use std::io::{Read, Write};
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
    let (r, w) = nix::unistd::pipe()?;
    match sys::fork()? {
        sys::Forked::Parent(_) => {
            drop(w);
            let mut msg = String::new();
            std::fs::File::from(r).read_to_string(&mut msg)?;
            if msg == "ok" {
                Ok(())
            } else if msg.is_empty() {
                bail!("the server exited before the mount was ready")
            } else {
                bail!("{msg}")
            }
        }
        sys::Forked::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            let mut w = std::fs::File::from(w);
            match ovl.mount(&mnt) {
                Ok(server) => {
                    let _ = std::env::set_current_dir("/");
                    if let Ok(null) = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open("/dev/null")
                    {
                        let _ = nix::unistd::dup2_stdin(&null);
                        let _ = nix::unistd::dup2_stdout(&null);
                        let _ = nix::unistd::dup2_stderr(&null);
                    }
                    let _ = w.write_all(b"ok");
                    drop(w);
                    server.join()?;
                    Ok(())
                }
                Err(e) => {
                    let _ = w.write_all(e.to_string().as_bytes());
                    std::process::exit(1);
                }
            }
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-overlayfs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
