//! `strata kill ID [SIGNAL]`

use strata_runtime::container::manage;

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Container id or name.
    pub id: String,
    /// Signal name or number (default KILL, as in Docker).
    #[arg(default_value = "KILL")]
    pub signal: String,
}

pub fn main(args: KillArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let sig = manage::parse_signal(&args.signal)?;
    manage::kill(&state.root(), &args.id, sig)?;
    Ok(0)
}
