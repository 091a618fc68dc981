//! `strata kill ID [SIGNAL] [--all]`

use strata_runtime::container::{manage, oci_ops};

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Container id or name.
    pub id: String,
    /// Signal name or number, with or without SIG (default KILL, as in Docker).
    #[arg(default_value = "KILL")]
    pub signal: String,
    /// Signal every process of the container (its cgroup), not only its init.
    #[arg(short, long)]
    pub all: bool,
}

pub fn main(args: KillArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let sig = manage::parse_signal(&args.signal)?;
    let root = state.root();
    // An OCI container (made by `create`) may be signalled while created, as runc allows.
    if args.all || oci_ops::bundle_of(&root, &args.id)?.is_some() {
        oci_ops::kill_container(&root, &args.id, sig, args.all)?;
    } else {
        manage::kill(&root, &args.id, sig)?;
    }
    Ok(0)
}
