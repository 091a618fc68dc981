//! One module per subcommand: each parses its arguments (clap derive) and calls the library.

pub mod exec;
pub mod gc;
pub mod kill;
pub mod ps;
pub mod rm;
pub mod run;

use std::path::PathBuf;

use strata_runtime::state::StateRoot;

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
