//! `strata-floor ROOTFS`: the startup floor (clone → pivot_root → /proc → exec /bin/true, then the reap)
//! run once by a program of its own, for the bench's floor-exec subject. Set against the in-process
//! floor, it shows what being a program costs every runtime that is one: fork, exec, libc start-up, exit.
//! Its argument is read without clap, whose parsing would be a cost of this program and not of that.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(rootfs), None) = (args.next(), args.next()) else {
        eprintln!("usage: strata-floor ROOTFS");
        return ExitCode::from(2);
    };
    match strata_bench::subjects::floor_once(Path::new(&rootfs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-floor: {e}");
            ExitCode::from(1)
        }
    }
}
