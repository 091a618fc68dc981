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
    /// Keep the container's writable layer (its path is printed).
    #[arg(long)]
    pub keep_upper: bool,
}

pub fn main(args: RmArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let root = state.root();
    for id in &args.ids {
        if let Some(kept) = manage::rm(&root, id, args.force, args.keep_upper)? {
            println!("{}", kept.display());
        }
    }
    Ok(0)
}
