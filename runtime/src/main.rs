//! The `strata` binary: argument parsing only; each subcommand lives in src/cli/<sub>.rs.

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
    Run(cli::run::RunArgs),
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
    /// Import, list, inspect and remove images; build the test images.
    #[command(subcommand)]
    Image(cli::image::ImageCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cli::run::main(a, &cli.root, &cli.state),
        Command::Exec(a) => cli::exec::main(a, &cli.state),
        Command::Ps(a) => cli::ps::main(a, &cli.state),
        Command::Kill(a) => cli::kill::main(a, &cli.state),
        Command::Rm(a) => cli::rm::main(a, &cli.state),
        Command::Gc(a) => cli::gc::main(a, &cli.state),
        Command::Image(cmd) => cli::image::run(&cli.root, cmd).map(|()| 0),
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
