//! `strata rm ID… [--force]`

use strata_runtime::container::manage;

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Container ids or names.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Kill a running container first.
    #[arg(short, long)]
    pub force: bool,
}

pub fn main(args: RmArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let root = state.root();
    for id in &args.ids {
        manage::rm(&root, id, args.force)?;
    }
    Ok(0)
}
