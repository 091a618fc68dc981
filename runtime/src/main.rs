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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import, list, inspect and remove images; build the test images.
    #[command(subcommand)]
    Image(cli::image::ImageCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(cmd) => cli::image::run(&cli.root, cmd).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::from(cli::EXIT_STRATA_ERROR)
        }
    }
}
