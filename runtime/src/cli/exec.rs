//! `strata exec ID [--user U] [--env K=V]… [--workdir|--cwd DIR] [--tty] [--detach] [--pid-file F]
//! [--console-socket S] -- CMD ARGS…`, and the OCI form `strata exec ID --process process.json`.

use std::path::PathBuf;

use anyhow::Context;
use strata_runtime::container::exec::{ExecConfig, exec};

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Container id or name.
    pub id: String,
    /// A runtime-spec process (JSON) to run instead of CMD: args, env, cwd, user, capabilities ….
    #[arg(short, long, conflicts_with = "command")]
    pub process: Option<PathBuf>,
    /// UID[:GID] or NAME[:GROUP] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Extra environment, KEY=VALUE (or KEY to take the host's value).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, visible_alias = "cwd")]
    pub workdir: Option<String>,
    /// Give the process a pty: its master goes to --console-socket, or without one strata relays it to
    /// its own stdin and stdout (as `run -t`).
    #[arg(short, long)]
    pub tty: bool,
    /// Accepted for Docker's `-it` habit: strata always passes its stdin to the process.
    #[arg(short, long)]
    pub interactive: bool,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs, leaving it running.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's host pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, required_unless_present = "process")]
    pub command: Vec<String>,
}

pub fn main(args: ExecArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let process = match &args.process {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                serde_json::from_str::<oci_spec::runtime::Process>(&text)
                    .with_context(|| format!("{}: not a runtime-spec process", path.display()))?,
            )
        }
        None => None,
    };
    let cfg = ExecConfig {
        id: args.id,
        user: args.user,
        env: args.env,
        workdir: args.workdir,
        command: args.command,
        process,
        tty: args.tty,
        console_socket: args.console_socket,
        detach: args.detach,
        pid_file: args.pid_file,
    };
    Ok(exec(&state.root(), &cfg)?)
}
