use clap::Parser;

/// strata-bench: container startup and kernel building-block benchmarks.
#[derive(Parser)]
#[command(name = "strata-bench", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
