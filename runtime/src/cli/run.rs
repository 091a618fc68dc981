//! `strata run [--rootfs DIR | --lower DIR:DIR] [--fs bind|kernel|fuse] [options] -- CMD ARGS…`

use std::path::PathBuf;

use strata_runtime::container::{self, FsMode, RunConfig};
use strata_runtime::namespaces::{self, Kind};
use strata_runtime::spec::{ImageDefaults, ProcessOptions};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A directory to use as the container's root filesystem.
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Layer directories for an overlay rootfs, top-first, separated by ':' (a debugging aid; images
    /// provide these normally).
    #[arg(long, value_delimiter = ':')]
    pub lower: Vec<PathBuf>,
    /// How `/` is provided (default: bind for --rootfs, kernel for --lower).
    #[arg(long, value_enum)]
    pub fs: Option<FsMode>,
    /// Container name (default: a random id).
    #[arg(long)]
    pub name: Option<String>,
    /// Run in the background; print the id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run strata's tiny init as pid 1 (reaps zombies, forwards signals); the command becomes pid 2.
    #[arg(long)]
    pub init: bool,
    /// Hostname inside the container.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Networking: none (a new namespace with loopback up), loopback (the same).
    #[arg(long, default_value = "none")]
    pub net: NetMode,
    /// UID[:GID] or NAME[:GROUP] to run the command as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Environment, KEY=VALUE (or KEY to take the host's value).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Add a capability to Docker's default set (ALL for every one).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Remove a capability (ALL for every one).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Share a namespace with the host: pid, uts, ipc, net, cgroup.
    #[arg(long)]
    pub share: Vec<Kind>,
    /// Join an existing namespace: NS=PATH (e.g. net=/proc/123/ns/net).
    #[arg(long, value_parser = parse_join)]
    pub join: Vec<(Kind, PathBuf)>,
    /// The command and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    None,
    Loopback,
}

fn parse_join(s: &str) -> Result<(Kind, PathBuf), namespaces::NamespaceError> {
    namespaces::parse_join(s)
}

pub fn main(args: RunArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let cfg = RunConfig {
        state_root: state.root(),
        name: args.name,
        rootfs: args.rootfs,
        lowers: args.lower,
        image: None,
        fs: args.fs,
        detach: args.detach,
        auto_remove: args.rm,
        init: args.init,
        process: ProcessOptions {
            command: args.command,
            hostname: args.hostname,
            user: args.user,
            env: args.env,
            workdir: args.workdir,
            read_only: args.read_only,
            cap_add: args.cap_add,
            cap_drop: args.cap_drop,
            share: args.share,
            join: args.join,
            userns: false,
        },
        image_defaults: ImageDefaults::default(),
    };
    Ok(container::run(cfg)?)
}
