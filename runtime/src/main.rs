use clap::Parser;

/// strata: a minimal container runtime.
#[derive(Parser)]
#[command(name = "strata", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
