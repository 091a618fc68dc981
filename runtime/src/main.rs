//! The `strata` binary: argument parsing only; each subcommand lives in src/cli/<sub>.rs and calls the library.

mod cli;

// The musl builds (scripts/setup) allocate with strata-overlayfs's sys::Allocator; musl's own allocator maps
// and unmaps memory every few allocations. glibc builds keep glibc's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: strata_overlayfs::sys::Allocator = strata_overlayfs::sys::Allocator;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// strata: a minimal container runtime (also an OCI runtime: create/start/state/kill/delete …).
#[derive(Parser)]
#[command(
    name = "strata",
    version = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0")
)]
struct Cli {
    /// Root of strata's image and layer store.
    #[arg(long, global = true, env = "STRATA_STORE", default_value = strata_runtime::image::store::DEFAULT_ROOT)]
    store: PathBuf,
    #[command(flatten)]
    state: cli::StateArgs,
    #[command(flatten)]
    log: cli::log::LogArgs,
    /// Use systemd to manage cgroups (not supported: refused).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// More output (accepted for OCI callers).
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

// Deferred: only the invoked subcommand's arguments are built (building all of them cost about half a
// millisecond of every `strata run`).
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// Run a command in a new container (or, with ID --bundle DIR, an OCI bundle: create + start).
    Run(Box<cli::run::RunArgs>),
    /// Run a command in a running container.
    Exec(cli::exec::ExecArgs),
    /// List containers, or (with an id) the processes of one.
    Ps(cli::ps::PsArgs),
    /// Send a signal to a container's main process (or with --all to all of its processes).
    Kill(cli::kill::KillArgs),
    /// Remove containers.
    Rm(cli::rm::RmArgs),
    /// Clean up after containers whose processes are gone.
    Gc(cli::gc::GcArgs),
    /// Live resource usage of containers, read from their cgroups.
    Stats(cli::stats::StatsArgs),
    /// Import, list, inspect and remove images; build the test images.
    #[command(subcommand)]
    Image(cli::image::ImageCommand),
    /// What this host offers: kernel, cgroups, namespaces, FUSE passthrough, overlay.
    Info(cli::info::InfoArgs),
    /// OCI: create a container from a bundle; it waits before its command until `start`.
    Create(cli::oci::CreateArgs),
    /// OCI: run the command of a created container.
    Start(cli::oci::IdArgs),
    /// OCI: print the state of a container as JSON.
    State(cli::oci::IdArgs),
    /// OCI: delete a container (its cgroup and state; --force kills a running one).
    Delete(cli::oci::DeleteArgs),
    /// OCI: freeze every process of a container.
    Pause(cli::oci::IdArgs),
    /// OCI: thaw a paused container.
    Resume(cli::oci::IdArgs),
    /// OCI (runc's command line): change the cgroup limits of a running container.
    Update(cli::oci::UpdateArgs),
    /// OCI: the features this runtime supports, as JSON.
    Features(cli::oci::FeaturesArgs),
}

/// Whether the command line looks like a `strata run` whose network namespace strata makes (the plan's
/// `ChildPlan::net_from_parent` decides after parsing): `run` with none of the flags
/// that change who makes it or that fork before the container (`-d`), nor an OCI bundle, nor
/// `--no-setup-helper`. A guess from the raw words, so the helper can start before argument parsing
/// (~0.3 ms); a wrong guess costs only an unused helper or a namespace made later.
fn looks_like_run_with_own_netns(args: &[std::ffi::OsString]) -> bool {
    let Some(run) = args.iter().position(|a| a == "run") else {
        return false;
    };
    !args[run + 1..]
        .iter()
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .any(|a| {
            [
                "--net",
                "--userns",
                "--share",
                "--join",
                "--bundle",
                "--detach",
                "--no-setup-helper",
            ]
            .iter()
            .any(|f| a.starts_with(f))
                || (a.starts_with('-')
                    && !a.starts_with("--")
                    && (a.contains('d') || a.contains('b')))
        })
}

fn main() -> ExitCode {
    // Before anything else: a task of strata's set-up helper makes the container's network namespace
    // (and, asked later, another its overlay) on the idle CPU while this process parses, prepares and
    // clones (see strata_runtime::process::SetupHelper).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let setup_helper = looks_like_run_with_own_netns(&args)
        .then(|| strata_runtime::process::SetupHelper::start().ok())
        .flatten();
    // Usage errors exit 125 like Docker's (clap's default is 2); --help and --version exit 0.
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                cli::EXIT_STRATA_ERROR
            } else {
                0
            });
        }
    };
    // runc's convention for the OCI commands: any failure exits 1.
    let oci_only = matches!(
        cli.command,
        Command::Create(_)
            | Command::Start(_)
            | Command::State(_)
            | Command::Delete(_)
            | Command::Pause(_)
            | Command::Resume(_)
            | Command::Update(_)
            | Command::Features(_)
    );
    let mut log = cli.log.open();
    let ok = |r: anyhow::Result<()>| r.map(|()| 0);
    let result = if cli.systemd_cgroup {
        Err(anyhow::anyhow!(
            "--systemd-cgroup is not supported: strata manages cgroupfs paths (use Docker's cgroupfs driver)"
        ))
    } else {
        match cli.command {
            Command::Run(a) => cli::run::main(*a, &cli.store, &cli.state, setup_helper),
            Command::Exec(a) => cli::exec::main(a, &cli.state),
            Command::Ps(a) => cli::ps::main(a, &cli.state),
            Command::Kill(a) => cli::kill::main(a, &cli.state),
            Command::Rm(a) => cli::rm::main(a, &cli.state),
            Command::Gc(a) => cli::gc::main(a, &cli.state),
            Command::Stats(a) => ok(cli::stats::run(a, &cli.state)),
            Command::Image(cmd) => ok(cli::image::run(&cli.store, cmd)),
            Command::Info(a) => ok(cli::info::run(a)),
            Command::Create(a) => cli::oci::create(a, &cli.state),
            Command::Start(a) => cli::oci::start(a, &cli.state),
            Command::State(a) => cli::oci::state(a, &cli.state),
            Command::Delete(a) => cli::oci::delete(a, &cli.state),
            Command::Pause(a) => cli::oci::pause(a, &cli.state, true),
            Command::Resume(a) => cli::oci::pause(a, &cli.state, false),
            Command::Update(a) => cli::oci::update(a, &cli.state),
            Command::Features(a) => cli::oci::features(a),
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Err(e) => {
            let message = strata_overlayfs::errline::one_line(e.as_ref());
            eprintln!("strata: {message}");
            log.error(&message);
            if oci_only || cli.systemd_cgroup {
                return ExitCode::from(1);
            }
            let code = e
                .downcast_ref::<strata_runtime::container::ContainerError>()
                .map_or(i32::from(cli::EXIT_STRATA_ERROR), |c| c.exit_code());
            ExitCode::from(code as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::looks_like_run_with_own_netns;

    fn guess(line: &str) -> bool {
        let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
        looks_like_run_with_own_netns(&args)
    }

    #[test]
    fn the_setup_helper_is_started_only_for_runs_that_let_strata_make_the_namespace() {
        assert!(guess("strata run --image x --fs kernel --rm -- /bin/true"));
        assert!(guess("strata --root /tmp/s run -it --image x -- sh"));
        // After `--` the words are the command's.
        assert!(guess("strata run --image x -- ping --net -d"));
        for other in [
            "strata exec c1 -- true",
            "strata run --net bridge --image x",
            "strata run --net=none --image x",
            "strata run --userns --image x",
            "strata run --share net --image x",
            "strata run --join net=/proc/1/ns/net --image x",
            "strata run -d --image x",
            "strata run -itd --image x",
            "strata run c1 --bundle /b",
            "strata run c1 -b /b",
            "strata run --netns-in-clone --image x",
            "strata run --no-setup-helper --image x",
        ] {
            assert!(!guess(other), "{other}");
        }
    }
}
