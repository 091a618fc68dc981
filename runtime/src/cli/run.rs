//! `strata run [--rootfs DIR | --lower DIR:DIR] [--fs bind|kernel|fuse] [options] -- CMD ARGS…`

use std::path::PathBuf;

use strata_runtime::cgroups::{self, Resources};
use strata_runtime::container::{self, FsMode, NetMode, RunConfig};
use strata_runtime::namespaces::{self, Kind};
use strata_runtime::spec::parse_size;
use strata_runtime::spec::{ImageDefaults, ProcessOptions};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// OCI form: the container id (with --bundle).
    pub id: Option<String>,
    /// OCI form: run the bundle in DIR (config.json + rootfs): create, start, wait, delete.
    #[arg(short, long, requires = "id")]
    pub bundle: Option<PathBuf>,
    /// OCI form: file to write the container init's host pid to.
    #[arg(long, requires = "bundle")]
    pub pid_file: Option<PathBuf>,
    /// OCI form: unix socket that receives the pty master (process.terminal).
    #[arg(long, requires = "bundle")]
    pub console_socket: Option<PathBuf>,
    /// OCI form: accepted for runc compatibility (strata always pivots).
    #[arg(long)]
    pub no_pivot: bool,
    /// An image from the store (see `strata image`).
    #[arg(long, conflicts_with = "rootfs")]
    pub image: Option<String>,
    /// A directory to use as the container's root filesystem.
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Layer directories for an overlay rootfs, top-first, separated by ':' (a debugging aid; images
    /// provide these normally).
    #[arg(long, value_delimiter = ':')]
    pub lower: Vec<PathBuf>,
    /// How `/` is provided (default: fuse for --image, bind for --rootfs, kernel for --lower).
    #[arg(long, value_enum)]
    pub fs: Option<FsMode>,
    /// Container name (default: a random id).
    #[arg(long)]
    pub name: Option<String>,
    /// Run in the background; print the id.
    #[arg(short, long, conflicts_with = "tty")]
    pub detach: bool,
    /// Give the command a terminal (a pty in the container's devpts): strata relays its stdin and stdout
    /// to it, puts a terminal caller in raw mode meanwhile and passes window size changes on.
    #[arg(short, long)]
    pub tty: bool,
    /// Accepted for Docker's `-it` habit: strata always passes its stdin to the container.
    #[arg(short, long)]
    pub interactive: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run strata's tiny init as pid 1 (reaps zombies, forwards signals); the command becomes pid 2.
    #[arg(long)]
    pub init: bool,
    /// Hostname inside the container.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Networking: none or loopback (a new namespace with only lo, up), bridge (a veth pair with a
    /// private /30).
    #[arg(long, value_enum, default_value = "none")]
    pub net: NetMode,
    /// Bandwidth limit of --net bridge in both directions (e.g. 10mbit, 1MB).
    #[arg(long, value_parser = parse_rate)]
    pub net_rate: Option<u64>,
    /// Have clone3 make the network namespace, not strata after the clone (the bench's comparison of
    /// the two; the namespace is the same).
    #[arg(long, hide = true)]
    pub netns_in_clone: bool,
    /// Make the network namespace (after the clone) and the overlay without strata's set-up helper
    /// process (the bench's comparison; the container is the same).
    #[arg(long, hide = true)]
    pub no_setup_helper: bool,
    /// Memory limit (e.g. 512m).
    #[arg(short, long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Memory plus swap limit (e.g. 1g), or -1 for unlimited swap.
    #[arg(long, value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// CPU limit in CPUs (e.g. 0.5).
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<f64>,
    /// Relative CPU weight (shares, default 1024).
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (e.g. 0-1).
    #[arg(long)]
    pub cpuset: Option<String>,
    /// Maximum number of processes (-1 unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids: Option<i64>,
    /// Block IO weight, 10 to 1000.
    #[arg(long)]
    pub io_weight: Option<u16>,
    /// Read rate limit of a device: DEV:RATE (e.g. /dev/sda:10m).
    #[arg(long, value_parser = parse_device_rate)]
    pub device_read_bps: Vec<(String, u64)>,
    /// Write rate limit of a device: DEV:RATE (e.g. /dev/sda:10m).
    #[arg(long, value_parser = parse_device_rate)]
    pub device_write_bps: Vec<(String, u64)>,
    /// Parent cgroup of the container's cgroup.
    #[arg(long, env = "STRATA_CGROUP_PARENT", default_value = cgroups::DEFAULT_PARENT)]
    pub cgroup_parent: String,
    /// UID[:GID] or NAME[:GROUP] to run the command as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Environment, KEY=VALUE (or KEY to take the host's value).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Run in a new user namespace: container root is an unprivileged host id from /etc/subuid
    /// (default 100000:65536); the rootfs is idmapped (bind) or mapped by the FUSE server (fuse).
    #[arg(long)]
    pub userns: bool,
    /// Security options as Docker spells them: `seccomp=unconfined` (no seccomp filter),
    /// `no-new-privileges` (always on).
    #[arg(long, value_parser = parse_security_opt)]
    pub security_opt: Vec<SecurityOpt>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityOpt {
    SeccompUnconfined,
    NoNewPrivileges,
}

fn parse_security_opt(s: &str) -> Result<SecurityOpt, String> {
    match s {
        "seccomp=unconfined" | "seccomp:unconfined" => Ok(SecurityOpt::SeccompUnconfined),
        "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
            Ok(SecurityOpt::NoNewPrivileges)
        }
        other => Err(format!(
            "unsupported security option '{other}' (supported: seccomp=unconfined, no-new-privileges)"
        )),
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    strata_runtime::network::parse_rate(s).map_err(|e| e.to_string())
}

fn parse_swap(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    parse_size(s).map(|v| v as i64)
}

fn parse_device_rate(s: &str) -> Result<(String, u64), String> {
    let (dev, rate) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected DEV:RATE, got '{s}'"))?;
    if dev.is_empty() {
        return Err(format!("expected DEV:RATE, got '{s}'"));
    }
    Ok((dev.to_string(), parse_size(rate)?))
}

fn parse_join(s: &str) -> Result<(Kind, PathBuf), namespaces::NamespaceError> {
    namespaces::parse_join(s)
}

pub fn main(
    args: RunArgs,
    image_root: &std::path::Path,
    state: &super::StateArgs,
    setup_helper: Option<strata_runtime::process::SetupHelper>,
) -> anyhow::Result<i32> {
    let setup_helper = setup_helper.filter(|_| !args.no_setup_helper);
    if let (Some(bundle), Some(id)) = (&args.bundle, &args.id) {
        drop(setup_helper);
        let create = super::oci::CreateArgs {
            id: id.clone(),
            bundle: bundle.clone(),
            pid_file: args.pid_file.clone(),
            console_socket: args.console_socket.clone(),
            no_pivot: args.no_pivot,
            no_new_keyring: false,
            cgroup_parent: args.cgroup_parent.clone(),
        };
        return super::oci::run(create, args.detach, state);
    }
    if args.id.is_some() {
        anyhow::bail!("a container id as argument needs --bundle DIR (or use --name)");
    }
    let cfg = RunConfig {
        state_root: state.root(),
        name: args.name,
        rootfs: args.rootfs,
        lowers: args.lower,
        image: args.image,
        image_root: image_root.to_path_buf(),
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
            userns: args.userns,
            seccomp_unconfined: args.security_opt.contains(&SecurityOpt::SeccompUnconfined),
            tty: args.tty,
        },
        image_defaults: ImageDefaults::default(),
        resources: Resources {
            memory: args.memory,
            memory_swap: args.memory_swap,
            cpus: args.cpus,
            cpu_shares: args.cpu_shares,
            cpuset: args.cpuset,
            pids: args.pids,
            io_weight: args.io_weight,
            device_read_bps: args.device_read_bps,
            device_write_bps: args.device_write_bps,
            // Docker's default: a container keeps CAP_MKNOD, but may open only the standard nodes.
            devices: strata_runtime::cgroups::devices::docker_default(),
        },
        cgroup_parent: args.cgroup_parent,
        net: args.net,
        net_rate: args.net_rate,
        netns_in_clone: args.netns_in_clone,
    };
    Ok(container::run(cfg, setup_helper)?)
}
