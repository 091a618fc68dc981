//! `strata gc`

use strata_runtime::container::manage;

#[derive(clap::Args, Debug)]
pub struct GcArgs {}

pub fn main(_args: GcArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    for id in manage::gc(&state.root())? {
        println!("{id}");
    }
    Ok(0)
}
