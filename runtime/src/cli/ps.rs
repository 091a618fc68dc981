//! `strata ps [--all] [--json]`

use strata_runtime::container::manage;

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// Show exited containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: PsArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let list = manage::ps(&state.root(), args.all)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    println!(
        "{:<20} {:>8} {:<8} {:<20} {:<6} {:<20} COMMAND",
        "ID", "PID", "STATUS", "IMAGE", "FS", "CREATED"
    );
    for c in list {
        let status = match (c.status, c.exit_code) {
            (strata_runtime::state::Status::Exited, Some(code)) => format!("exited({code})"),
            (s, _) => format!("{s:?}").to_lowercase(),
        };
        println!(
            "{:<20} {:>8} {:<8} {:<20} {:<6} {:<20} {}",
            c.id,
            c.pid,
            status,
            c.image.as_deref().unwrap_or("-"),
            c.fs,
            c.created,
            c.command.join(" ")
        );
    }
    Ok(0)
}
