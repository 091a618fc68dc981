//! `strata ps [--all] [--json]`, and the OCI form `strata ps ID [--format table|json]`

use strata_runtime::container::{manage, oci_ops};

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// One container: list its processes (host pids) instead of the containers.
    pub id: Option<String>,
    /// With an id: `json` prints a JSON array of pids (runc's `ps --format json`).
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Show exited containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: PsArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    if let Some(id) = &args.id {
        let pids = oci_ops::pids(&state.root(), id)?;
        match args.format.as_str() {
            "json" => println!("{}", serde_json::to_string(&pids)?),
            "table" => {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
            other => anyhow::bail!("unknown --format {other:?} (table or json)"),
        }
        return Ok(0);
    }
    let list = manage::ps(&state.root(), args.all)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|c| {
            let status = match (c.status, c.exit_code) {
                (strata_runtime::state::Status::Exited, Some(code)) => format!("exited({code})"),
                (s, _) => format!("{s:?}").to_lowercase(),
            };
            [
                c.id.clone(),
                c.pid.to_string(),
                status,
                c.image.as_deref().unwrap_or("-").to_string(),
                c.fs.clone(),
                c.created.clone(),
                c.command.join(" "),
            ]
        })
        .collect();
    let text = super::table(
        ["ID", "PID", "STATUS", "IMAGE", "FS", "CREATED", "COMMAND"],
        &["PID"],
        &rows,
    );
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        // The reader went away (`strata ps | head -1`): not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(0)
}
