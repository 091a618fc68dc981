//! The container's configuration is an OCI runtime spec (`oci_spec::runtime::Spec`). `strata run` builds one
//! from its flags and the image config here; the rest of the runtime only reads the spec, so the OCI command
//! line reuses the same path.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespaceBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use crate::namespaces::Kind;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unknown capability '{0}'")]
    UnknownCapability(String),
    #[error("invalid --env '{0}': expected KEY=VALUE or KEY")]
    BadEnv(String),
    #[error("invalid --user '{0}': expected UID[:GID] or NAME[:GROUP]")]
    BadUser(String),
    #[error("--workdir must be an absolute path, got '{0}'")]
    RelativeWorkdir(String),
    #[error("no command given and the image has neither Entrypoint nor Cmd")]
    NoCommand,
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::NamespaceError),
    #[error("building the OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Docker's default masked paths (a /dev/null or read-only tmpfs is mounted over each).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The parts of an image config a container uses (filled from the image store's record).
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// The process- and isolation-related options of `strata run` (and of the OCI path), independent of clap.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    pub command: Vec<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Namespaces shared with the host instead of created.
    pub share: Vec<Kind>,
    /// Namespaces joined by path.
    pub join: Vec<(Kind, PathBuf)>,
    pub userns: bool,
    /// `--security-opt seccomp=unconfined`: no seccomp filter.
    pub seccomp_unconfined: bool,
    /// `-t`: the command runs on a pty (`process.terminal`), with TERM=xterm unless set, as under Docker.
    pub tty: bool,
}

/// Parses a capability name as Docker accepts it: `NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin`, or `ALL`.
pub fn parse_capabilities(name: &str) -> Result<Vec<Capability>, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare == "ALL" {
        return Ok(caps::all()
            .into_iter()
            .filter_map(|c| Capability::from_str(c.to_string().trim_start_matches("CAP_")).ok())
            .collect());
    }
    Capability::from_str(bare)
        .map(|c| vec![c])
        .map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

/// The effective capability set: Docker's defaults, plus `add`, minus `drop` (drop wins; `ALL` works in
/// both, as in Docker).
pub fn capability_set(add: &[String], drop: &[String]) -> Result<HashSet<Capability>, SpecError> {
    let mut set: HashSet<Capability> = DOCKER_DEFAULT_CAPS.into_iter().collect();
    for a in add {
        set.extend(parse_capabilities(a)?);
    }
    for d in drop {
        for c in parse_capabilities(d)? {
            set.remove(&c);
        }
    }
    Ok(set)
}

/// Splits `--user` into (user, group) parts, either of which may be a name or a number.
pub fn split_user(user: &str) -> Result<(String, Option<String>), SpecError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() || g.is_some_and(str::is_empty) || user.contains(char::is_whitespace) {
        return Err(SpecError::BadUser(user.to_string()));
    }
    Ok((u.to_string(), g.map(str::to_string)))
}

/// Merges `KEY=VALUE` settings into `env`, later ones replacing earlier ones of the same key; a bare `KEY`
/// takes the host's value (or is skipped when the host has none), as in Docker.
pub fn merge_env(env: &mut Vec<String>, settings: &[String]) -> Result<(), SpecError> {
    for s in settings {
        let entry = match s.split_once('=') {
            Some(("", _)) => return Err(SpecError::BadEnv(s.clone())),
            Some(_) => s.clone(),
            None if s.is_empty() => return Err(SpecError::BadEnv(s.clone())),
            None => match std::env::var(s) {
                Ok(v) => format!("{s}={v}"),
                Err(_) => continue,
            },
        };
        let key_len = entry.find('=').unwrap_or(entry.len());
        env.retain(|e| {
            !(e.len() > key_len
                && e.as_bytes()[key_len] == b'='
                && e[..key_len] == entry[..key_len])
        });
        env.push(entry);
    }
    Ok(())
}

/// Parses a size as Docker does (`--memory 512m`): a number with an optional binary unit b, k, m, g, t
/// (case-insensitive, an optional trailing "b": "512mb"); a plain number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let bad = || {
        format!("invalid size '{text}': expected a number with an optional unit b, k, m, g or t")
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(bad());
    }
    Ok((v * mult as f64) as u64)
}

/// The subordinate id range (start, count) of `user` in /etc/subuid or /etc/subgid (`file`), or the
/// default 100000:65536 when the file has no entry for it.
pub fn subordinate_range(file: &str, user: &str) -> (u32, u32) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (name, start, count) =
                (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
            (name == user || name == "0").then_some((start, count))
        })
        .next()
        .unwrap_or((100_000, 65_536))
}

/// Looks a variable up in an `env` list.
pub fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The standard container mounts: a fresh /proc, a tmpfs /dev with pts, shm and mqueue, a read-only /sys
/// and the container's cgroups read-only at /sys/fs/cgroup.
pub fn default_mounts() -> Result<Vec<Mount>, SpecError> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        // The container's own cgroups, read-only (rootfs::CgroupFs expands it per cgroup version).
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

/// Builds the container's OCI spec. `root` is the directory that becomes `/` (a bind source, or the
/// mountpoint of an overlay); `image` supplies defaults that flags override.
pub fn build(
    root: PathBuf,
    opts: &ProcessOptions,
    image: &ImageDefaults,
) -> Result<Spec, SpecError> {
    let args = if !opts.command.is_empty() {
        if image.entrypoint.is_empty() {
            opts.command.clone()
        } else {
            image
                .entrypoint
                .iter()
                .chain(&opts.command)
                .cloned()
                .collect()
        }
    } else {
        image
            .entrypoint
            .iter()
            .chain(&image.cmd)
            .cloned()
            .collect::<Vec<_>>()
    };
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }

    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| "strata".to_string());
    let mut env = vec![DEFAULT_PATH.to_string()];
    merge_env(&mut env, &image.env)?;
    merge_env(&mut env, &[format!("HOSTNAME={hostname}")])?;
    if opts.tty {
        merge_env(&mut env, &["TERM=xterm".to_string()])?;
    }
    merge_env(&mut env, &opts.env)?;

    let cwd = match opts
        .workdir
        .as_deref()
        .or(image.working_dir.as_deref())
        .filter(|w| !w.is_empty())
    {
        Some(w) if !w.starts_with('/') => return Err(SpecError::RelativeWorkdir(w.to_string())),
        Some(w) => w.to_string(),
        None => "/".to_string(),
    };

    // Numeric users are resolved here; names are resolved in the container against its /etc/passwd
    // (recorded as an annotation), so the spec stays valid OCI.
    let mut annotations = std::collections::HashMap::new();
    let mut user = UserBuilder::default().uid(0u32).gid(0u32);
    if let Some(u) = opts
        .user
        .as_deref()
        .or(image.user.as_deref())
        .filter(|u| !u.is_empty())
    {
        let (name, group) = split_user(u)?;
        match (name.parse::<u32>(), group.as_deref().map(str::parse::<u32>)) {
            (Ok(uid), None) => user = user.uid(uid).gid(uid),
            (Ok(uid), Some(Ok(gid))) => user = user.uid(uid).gid(gid),
            _ => {
                annotations.insert(ANNOTATION_USER.to_string(), u.to_string());
            }
        }
    }
    if opts.seccomp_unconfined {
        annotations.insert(ANNOTATION_SECCOMP.to_string(), "unconfined".to_string());
    }

    // The open-files limit is strata's own (made explicit in the spec): raising a hard limit needs
    // CAP_SYS_RESOURCE, which strata may not have.
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    let caps = capability_set(&opts.cap_add, &opts.cap_drop)?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;

    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(user.build()?)
        .capabilities(capabilities)
        .no_new_privileges(true)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(nofile.0)
                .hard(nofile.1)
                .build()?,
        ])
        .build()?;

    let mut namespaces = Vec::new();
    for kind in Kind::ALL {
        if let Some((_, path)) = opts.join.iter().find(|(k, _)| *k == kind) {
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(kind.oci())
                    .path(path.clone())
                    .build()?,
            );
        } else if !opts.share.contains(&kind) && (kind != Kind::User || opts.userns) {
            namespaces.push(LinuxNamespaceBuilder::default().typ(kind.oci()).build()?);
        }
    }

    let mut spec = Spec::default();
    spec.set_root(Some(
        RootBuilder::default()
            .path(root)
            .readonly(opts.read_only)
            .build()?,
    ));
    spec.set_hostname(Some(hostname));
    spec.set_process(Some(process));
    spec.set_mounts(Some(default_mounts()?));
    if !annotations.is_empty() {
        spec.set_annotations(Some(annotations));
    }
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    linux.set_namespaces(Some(namespaces));
    linux.set_masked_paths(Some(MASKED_PATHS.iter().map(|s| s.to_string()).collect()));
    linux.set_readonly_paths(Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    linux.set_resources(None);
    if opts.userns {
        // Container root is the first id of strata's subordinate range, unprivileged on the host.
        let map = |(start, count): (u32, u32)| -> Result<Vec<LinuxIdMapping>, SpecError> {
            Ok(vec![
                LinuxIdMappingBuilder::default()
                    .container_id(0u32)
                    .host_id(start)
                    .size(count)
                    .build()?,
            ])
        };
        linux.set_uid_mappings(Some(map(subordinate_range("/etc/subuid", "root"))?));
        linux.set_gid_mappings(Some(map(subordinate_range("/etc/subgid", "root"))?));
    }
    Ok(spec)
}

/// Annotation carrying a `--user` given by name, resolved inside the container.
pub const ANNOTATION_USER: &str = "org.strata.user";
/// Annotation `unconfined` turns strata's default seccomp filter off.
pub const ANNOTATION_SECCOMP: &str = "org.strata.seccomp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_default_add_drop() {
        let set = capability_set(&["net_admin".into()], &["CAP_CHOWN".into()]).unwrap();
        assert!(set.contains(&Capability::NetAdmin));
        assert!(!set.contains(&Capability::Chown));
        assert_eq!(set.len(), 14);
        assert!(capability_set(&["bogus".into()], &[]).is_err());
        assert!(capability_set(&[], &["ALL".into()]).unwrap().is_empty());
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("10b").unwrap(), 10);
        assert!(parse_size("lots").is_err() && parse_size("-1m").is_err());
    }

    #[test]
    fn env_merge_overrides_by_key() {
        let mut env = vec![DEFAULT_PATH.to_string(), "A=1".to_string()];
        merge_env(&mut env, &["A=2".into(), "AB=3".into()]).unwrap();
        assert_eq!(env_get(&env, "A"), Some("2"));
        assert_eq!(env_get(&env, "AB"), Some("3"));
        assert_eq!(env.len(), 3);
        assert!(merge_env(&mut env, &["=x".into()]).is_err());
    }

    #[test]
    fn spec_from_flags_and_image() {
        let opts = ProcessOptions {
            command: vec!["-c".into(), "true".into()],
            user: Some("1000:100".into()),
            share: vec![Kind::Net],
            ..Default::default()
        };
        let image = ImageDefaults {
            entrypoint: vec!["/bin/sh".into()],
            ..Default::default()
        };
        let spec = build(PathBuf::from("/r"), &opts, &image).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["/bin/sh", "-c", "true"]);
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(
            ns.iter()
                .all(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Network)
        );
        assert_eq!(ns.len(), 5);
        assert!(
            build(
                PathBuf::from("/r"),
                &ProcessOptions::default(),
                &ImageDefaults::default()
            )
            .is_err()
        );
    }
}
