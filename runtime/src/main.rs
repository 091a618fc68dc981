use clap::{Parser, Subcommand};

mod cli;

/// strata: a minimal container runtime.
#[derive(Parser)]
#[command(name = "strata", version)]
struct Cli {
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cli::run::main(a, &cli.state),
        Command::Exec(a) => cli::exec::main(a, &cli.state),
        Command::Ps(a) => cli::ps::main(a, &cli.state),
        Command::Kill(a) => cli::kill::main(a, &cli.state),
        Command::Rm(a) => cli::rm::main(a, &cli.state),
        Command::Gc(a) => cli::gc::main(a, &cli.state),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: {e}");
            e.downcast_ref::<strata_runtime::container::ContainerError>()
                .map_or(125, |c| c.exit_code())
        }
    };
    std::process::exit(code);
}
