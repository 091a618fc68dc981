//! The `strata` binary: argument parsing only; every command calls the library.

mod cli;

use clap::{Parser, Subcommand};

/// strata: a minimal container runtime.
#[derive(Parser)]
#[command(name = "strata", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Live resource usage of containers, read from their cgroups.
    Stats(cli::stats::StatsArgs),
    /// What this host offers: kernel, cgroups, namespaces, FUSE passthrough, overlay.
    Info(cli::info::InfoArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stats(args) => cli::stats::run(args),
        Command::Info(args) => cli::info::run(args),
    };
    if let Err(e) = result {
        // One line naming the problem; 125 = strata's own error, as Docker does.
        eprintln!("strata: {e:#}");
        std::process::exit(125);
    }
}
