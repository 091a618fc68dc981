//! One module per `strata` subcommand; each turns parsed arguments into library calls.

pub mod exec;
pub mod gc;
pub mod image;
pub mod kill;
pub mod ps;
pub mod rm;
pub mod run;

use std::path::PathBuf;

use strata_runtime::state::StateRoot;

/// Exit status for strata's own failures (as `docker run` uses 125), distinct from a container's status.
pub const EXIT_STRATA_ERROR: u8 = 125;

/// Options every container command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct StateArgs {
    /// Where container state lives.
    #[arg(
        long,
        global = true,
        env = "STRATA_STATE",
        default_value = "/run/strata"
    )]
    pub state_dir: PathBuf,
}

impl StateArgs {
    pub fn root(&self) -> StateRoot {
        StateRoot::new(self.state_dir.clone())
    }
}
