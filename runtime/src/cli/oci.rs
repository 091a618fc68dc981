//! The OCI runtime commands (runtime-spec runtime.md, runc's command line): `create`, `start`, `state`,
//! `delete`, `pause`, `resume`, `features`, and `run ID --bundle DIR`. `kill`, `ps` and `exec` accept
//! their OCI forms in their own modules.

use std::path::PathBuf;

use strata_runtime::cgroups;
use strata_runtime::container::oci::{self, CreateOptions};
use strata_runtime::container::oci_ops;

/// Options of `create` (and of `run --bundle`).
#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// The bundle directory (config.json and the rootfs).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the container init's host pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility; strata always uses pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (the keyring is not used).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Parent cgroup when config.json has no linux.cgroupsPath.
    #[arg(long, env = "STRATA_CGROUP_PARENT", default_value = cgroups::DEFAULT_PARENT)]
    pub cgroup_parent: String,
}

impl CreateArgs {
    fn options(&self, state: &super::StateArgs) -> CreateOptions {
        CreateOptions {
            state_root: state.root(),
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct IdArgs {
    /// Container id.
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Container id.
    pub id: String,
    /// Kill a running container first.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct FeaturesArgs {}

/// runc's `update`: the new limits as the runtime-spec's `linux.resources` JSON (`--resources FILE`, `-`
/// for stdin, as containerd's shim sends them) and/or flags; a flag overrides the JSON.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// linux.resources JSON file, or - for stdin.
    #[arg(short = 'r', long)]
    pub resources: Option<std::path::PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory plus swap limit in bytes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// CFS quota in microseconds per period.
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPUs allowed (cpuset list, e.g. 0-1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Maximum number of tasks (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10–1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Container id.
    pub id: String,
}

pub fn create(args: CreateArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    oci::create(&args.options(state))?;
    Ok(0)
}

pub fn start(args: IdArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    oci_ops::start(&state.root(), &args.id)?;
    Ok(0)
}

pub fn state(args: IdArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    let v = oci_ops::state_of(&state.root(), &args.id)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

pub fn delete(args: DeleteArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    oci_ops::delete(&state.root(), &args.id, args.force)?;
    Ok(0)
}

pub fn pause(args: IdArgs, state: &super::StateArgs, paused: bool) -> anyhow::Result<i32> {
    oci_ops::set_paused(&state.root(), &args.id, paused)?;
    Ok(0)
}

pub fn update(args: UpdateArgs, state: &super::StateArgs) -> anyhow::Result<i32> {
    use oci_spec::runtime::LinuxResources;
    let res: LinuxResources = match &args.resources {
        None => LinuxResources::default(),
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading --resources {}: {e}", p.display()))?
            };
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--resources: {e}"))?
        }
    };
    let mut r = strata_runtime::cgroups::Resources::from_oci(&res);
    if let Some(m) = args.memory {
        r.memory =
            Some(u64::try_from(m).map_err(|_| anyhow::anyhow!("--memory {m}: must be >= 0"))?);
    }
    if let Some(s) = args.memory_swap {
        r.memory_swap = Some(s);
    }
    if args.cpu_quota.is_some() || args.cpu_period.is_some() {
        let cpu = res.cpu().clone().unwrap_or_default();
        let quota = args.cpu_quota.or(cpu.quota()).unwrap_or(0);
        let period = args.cpu_period.or(cpu.period()).unwrap_or(100_000);
        if quota > 0 && period > 0 {
            r.cpus = Some(quota as f64 / period as f64);
        }
    }
    if let Some(s) = args.cpu_share {
        r.cpu_shares = Some(s);
    }
    if let Some(c) = args.cpuset_cpus {
        r.cpuset = Some(c);
    }
    if let Some(p) = args.pids_limit {
        r.pids = Some(p);
    }
    if let Some(w) = args.blkio_weight {
        r.io_weight = Some(w);
    }
    oci_ops::update(&state.root(), &args.id, &r)?;
    Ok(0)
}

pub fn features(_args: FeaturesArgs) -> anyhow::Result<i32> {
    println!(
        "{}",
        serde_json::to_string_pretty(&strata_runtime::oci::features())?
    );
    Ok(0)
}

/// `run ID --bundle DIR [--detach]`: create + start; without --detach, wait for the container's init
/// (strata is its parent), then delete it and exit with its status.
pub fn run(args: CreateArgs, detach: bool, state: &super::StateArgs) -> anyhow::Result<i32> {
    let root = state.root();
    // Installed before the clone, as `strata run` does, so signals to strata reach the container.
    let mut forwarder = (!detach)
        .then(strata_runtime::process::SignalForwarder::install)
        .transpose()?;
    let pid = oci::create(&args.options(state))?;
    if let Err(e) = oci_ops::start(&root, &args.id) {
        let _ = oci_ops::delete(&root, &args.id, true);
        return Err(e.into());
    }
    let Some(forwarder) = forwarder.as_mut() else {
        return Ok(0);
    };
    let code = forwarder.wait(nix::unistd::Pid::from_raw(pid))?.code();
    oci_ops::delete(&root, &args.id, true)?;
    Ok(code)
}
