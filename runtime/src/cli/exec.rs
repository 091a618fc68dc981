//! `strata exec ID [--user U] [--env K=V]… [--workdir DIR] -- CMD ARGS…`

use strata_runtime::container::exec::{ExecConfig, exec};

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Container id or name.
    pub id: String,
    /// UID[:GID] or NAME[:GROUP] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Extra environment, KEY=VALUE (or KEY to take the host's value).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn main(args: ExecArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let cfg = ExecConfig {
        id: args.id,
        user: args.user,
        env: args.env,
        workdir: args.workdir,
        command: args.command,
    };
    Ok(exec(&state.root(), &cfg)?)
}
