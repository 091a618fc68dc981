//! `strata info [--json]`: what this host offers strata.

use strata_runtime::hostinfo::HostInfo;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let info = HostInfo::gather();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("strata:             {}", info.strata_version);
    println!(
        "kernel:             {} ({})",
        info.kernel_release, info.kernel_version
    );
    println!("cgroup mode:        {}", info.cgroup_mode);
    println!("cgroup controllers: {}", info.cgroup_controllers.join(" "));
    println!("namespaces:         {}", info.namespaces.join(" "));
    println!("user namespaces:    {}", yes(info.user_namespaces_enabled));
    println!("fuse:               {}", yes(info.fuse));
    println!(
        "fuse passthrough:   {} ({})",
        yes(info.fuse_passthrough.available),
        info.fuse_passthrough.reason
    );
    println!("kernel overlay:     {}", yes(info.overlay));
    Ok(())
}
