//! The `strata` binary: argument parsing only; each subcommand lives in src/cli/<sub>.rs and calls the library.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// strata: a minimal container runtime.
#[derive(Parser)]
#[command(name = "strata", version)]
struct Cli {
    /// Root of strata's image and layer store.
    #[arg(long, global = true, env = "STRATA_ROOT", default_value = strata_runtime::image::store::DEFAULT_ROOT)]
    root: PathBuf,
    #[command(flatten)]
    state: cli::StateArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container.
    Run(Box<cli::run::RunArgs>),
    /// Run a command in a running container.
    Exec(cli::exec::ExecArgs),
    /// List containers.
    Ps(cli::ps::PsArgs),
    /// Send a signal to a container's main process.
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
}

fn main() -> ExitCode {
    // Usage errors exit 125 like Docker's (clap's default is 2); --help and --version exit 0.
    let cli = match Cli::try_parse() {
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
    let ok = |r: anyhow::Result<()>| r.map(|()| 0);
    let result = match cli.command {
        Command::Run(a) => cli::run::main(*a, &cli.root, &cli.state),
        Command::Exec(a) => cli::exec::main(a, &cli.state),
        Command::Ps(a) => cli::ps::main(a, &cli.state),
        Command::Kill(a) => cli::kill::main(a, &cli.state),
        Command::Rm(a) => cli::rm::main(a, &cli.state),
        Command::Gc(a) => cli::gc::main(a, &cli.state),
        Command::Stats(a) => ok(cli::stats::run(a, &cli.state)),
        Command::Image(cmd) => ok(cli::image::run(&cli.root, cmd)),
        Command::Info(a) => ok(cli::info::run(a)),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Err(e) => {
            eprintln!("strata: {e:#}");
            let code = e
                .downcast_ref::<strata_runtime::container::ContainerError>()
                .map_or(i32::from(cli::EXIT_STRATA_ERROR), |c| c.exit_code());
            ExitCode::from(code as u8)
        }
    }
}
