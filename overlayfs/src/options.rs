//! The configuration of one overlay mount and the parser for fuse-overlayfs compatible `-o` strings.

use std::path::PathBuf;
use std::time::Duration;

use crate::idmap::IdMap;

/// Which form of whiteout this mount writes when it removes a lower object. Both forms are always
/// recognised when reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhiteoutForm {
    /// A character device 0/0 (what the kernel overlayfs writes); needs CAP_MKNOD.
    #[default]
    Kernel,
    /// An empty `.wh.NAME` file (OCI image layer form), for hosts where mknod is refused.
    Oci,
}

/// Everything that describes one overlay mount.
#[derive(Clone, Debug)]
pub struct Config {
    /// Lower layers, top-first (like `lowerdir=`).
    pub lowers: Vec<PathBuf>,
    /// The writable layer; without it the mount is read-only.
    pub upper: Option<PathBuf>,
    /// Scratch directory on the same filesystem as `upper`, for staged copy-up.
    pub work: Option<PathBuf>,
    /// Whiteout form written on removal.
    pub whiteout: WhiteoutForm,
    /// Number of FUSE worker threads (default: one per CPU, 2 to 4).
    pub threads: usize,
    /// Use FUSE passthrough for file data when the kernel allows it.
    pub passthrough: bool,
    /// Let every user access the mount (needed for a container rootfs).
    pub allow_other: bool,
    /// Let the kernel check permissions (POSIX modes) on every access.
    pub default_permissions: bool,
    /// Honour setuid/setgid bits.
    pub suid: bool,
    /// Allow device nodes.
    pub dev: bool,
    /// Allow execution.
    pub exec: bool,
    /// Mount read-only even if an upper layer is given.
    pub read_only: bool,
    /// Forward fsync to the layers (fuse-overlayfs `fsync=0` turns it off).
    pub fsync: bool,
    /// Report every file as owned by this uid / gid (fuse-overlayfs squash_to_*).
    pub squash_uid: Option<u32>,
    /// See `squash_uid`.
    pub squash_gid: Option<u32>,
    /// uid translation for every layer (fuse-overlayfs `uidmapping=DISK:SHOWN:LEN…`).
    pub uid_map: IdMap,
    /// gid translation for every layer (`gidmapping=`).
    pub gid_map: IdMap,
    /// uid translation for the upper layer only, overriding `uid_map` there (`upper_uidmapping=`): a
    /// mount inside a user namespace over unshifted image layers whose upper layer holds host ids.
    pub upper_uid_map: IdMap,
    /// gid counterpart of `upper_uid_map` (`upper_gidmapping=`).
    pub upper_gid_map: IdMap,
    /// Entry/attr cache time for objects that live only in lower layers (immutable).
    pub lower_ttl: Duration,
    /// Entry/attr cache time for objects in the upper layer.
    pub upper_ttl: Duration,
    /// The source name shown in /proc/mounts.
    pub fsname: String,
}

/// One worker per CPU, 2 to 4: a container's root is metadata served from caches and data through
/// passthrough, and a client's requests mostly come one at a time. Each idle worker costs start-up time,
/// and consecutive requests wake different workers: on 2 CPUs, 4 workers instead of 2 made the first
/// stat after a mount ~0.3 ms slower (1.1-1.2 against 0.76-0.85 ms) and `strata run --fs fuse`
/// 0.15-0.3 ms slower.
fn default_threads() -> usize {
    allowed_cpus().clamp(2, 4)
}

/// The CPUs this thread may run on. Not `available_parallelism`: that also reads
/// /proc/self/cgroup and the cgroup's CPU quota files, ~0.1 ms of a mount's start-up here, for a
/// quota that does not change how many requests can be in flight.
fn allowed_cpus() -> usize {
    use nix::sched::CpuSet;
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_or(2, |set| {
        (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count()
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lowers: Vec::new(),
            upper: None,
            work: None,
            whiteout: WhiteoutForm::Kernel,
            threads: default_threads(),
            passthrough: true,
            allow_other: true,
            default_permissions: true,
            suid: true,
            dev: true,
            exec: true,
            read_only: false,
            fsync: true,
            squash_uid: None,
            squash_gid: None,
            uid_map: IdMap::default(),
            gid_map: IdMap::default(),
            upper_uid_map: IdMap::default(),
            upper_gid_map: IdMap::default(),
            lower_ttl: Duration::from_secs(86400),
            upper_ttl: Duration::from_secs(1),
            fsname: "strata-overlayfs".into(),
        }
    }
}

/// A `-o` string that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    /// An option this program does not know.
    #[error("unknown mount option '{0}'")]
    Unknown(String),
    /// An option whose value does not parse.
    #[error("bad value for mount option '{0}'")]
    BadValue(String),
    /// `lowerdir=` missing or empty.
    #[error("no lowerdir= given")]
    NoLower,
    /// upperdir without workdir or the other way round.
    #[error("upperdir= and workdir= must be given together")]
    UpperWithoutWork,
}

/// Options accepted for compatibility with fuse-overlayfs, mount(8) and libfuse that have no effect
/// here (shown by `--help`).
pub const IGNORED_OPTIONS: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "async",
    "sync",
    "dirsync",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "iversion",
    "noiversion",
    "mand",
    "nomand",
    "silent",
    "loud",
    "auto_unmount",
    "allow_root",
    "kernel_cache",
    "auto_cache",
    "big_writes",
    "large_read",
    "direct_io",
    "hard_remove",
    "use_ino",
    "readdir_ino",
    "noforget",
    "intr",
    "static_nlink",
    "noacl",
    "acl",
    "volatile",
    "fast_ino",
    "writeback",
    "noxattrs",
    "userxattr",
    "debug",
    "nfs_export",
    "index",
    "redirect_dir",
    "xino",
    "metacopy",
    "threaded",
    "plugins",
    "xattr_permissions",
    "comment",
    "context",
    "fscontext",
    "defcontext",
    "rootcontext",
    "max_read",
    "max_write",
    "blksize",
    "subtype",
    "modules",
    "remember",
    "negative_timeout",
    "entry_timeout",
    "attr_timeout",
    "ac_attr_timeout",
    "uid",
    "gid",
    "umask",
    "fmask",
    "dmask",
    "rootmode",
    "user_id",
    "group_id",
    "fd",
    "x-*",
];

/// Split a `lowerdir=` value on ':' (a backslash escapes the next character).
fn split_dirs(value: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ':' => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut cur)));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out
}

/// Split an option string on ',' (a backslash escapes the next character).
fn split_opts(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_map(key: &str, v: &str) -> Result<IdMap, OptionsError> {
    IdMap::parse(v).map_err(|_| OptionsError::BadValue(key.into()))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, OptionsError> {
    match v {
        "1" | "on" | "yes" | "true" => Ok(true),
        "0" | "off" | "no" | "false" => Ok(false),
        _ => Err(OptionsError::BadValue(key.into())),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, OptionsError> {
    v.parse().map_err(|_| OptionsError::BadValue(key.into()))
}

impl Config {
    /// Parse a fuse-overlayfs `-o` string (several `-o` values may be joined with ',').
    pub fn from_mount_options(opts: &str) -> Result<Config, OptionsError> {
        let mut c = Config::default();
        c.apply_options(opts)?;
        c.validate()?;
        Ok(c)
    }

    /// Apply one more `-o` string to this config (without validating the result).
    pub fn apply_options(&mut self, opts: &str) -> Result<(), OptionsError> {
        for opt in split_opts(opts) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (opt.clone(), None),
            };
            let val = || {
                value
                    .clone()
                    .ok_or_else(|| OptionsError::BadValue(key.clone()))
            };
            match key.as_str() {
                "lowerdir" => self.lowers = split_dirs(&val()?),
                "upperdir" => self.upper = Some(PathBuf::from(unescape(&val()?))),
                "workdir" => self.work = Some(PathBuf::from(unescape(&val()?))),
                "whiteout" => {
                    self.whiteout = match val()?.as_str() {
                        "kernel" | "chardev" => WhiteoutForm::Kernel,
                        "oci" | "wh" => WhiteoutForm::Oci,
                        _ => return Err(OptionsError::BadValue(key)),
                    }
                }
                "threads" => {
                    self.threads = parse_num(&key, &val()?)?;
                    if self.threads == 0 || self.threads > 64 {
                        return Err(OptionsError::BadValue(key));
                    }
                }
                "passthrough" => self.passthrough = parse_bool(&key, &val()?)?,
                "nopassthrough" => self.passthrough = false,
                "allow_other" => self.allow_other = true,
                "noallow_other" => self.allow_other = false,
                "default_permissions" => self.default_permissions = true,
                "nodefault_permissions" => self.default_permissions = false,
                "suid" => self.suid = true,
                "nosuid" => self.suid = false,
                "dev" => self.dev = true,
                "nodev" => self.dev = false,
                "exec" => self.exec = true,
                "noexec" => self.exec = false,
                "ro" => self.read_only = true,
                "rw" => self.read_only = false,
                "fsync" => self.fsync = parse_bool(&key, &val()?)?,
                "squash_to_root" => {
                    self.squash_uid = Some(0);
                    self.squash_gid = Some(0);
                }
                "squash_to_uid" => self.squash_uid = Some(parse_num(&key, &val()?)?),
                "squash_to_gid" => self.squash_gid = Some(parse_num(&key, &val()?)?),
                "uidmapping" => self.uid_map = parse_map(&key, &val()?)?,
                "gidmapping" => self.gid_map = parse_map(&key, &val()?)?,
                "upper_uidmapping" => self.upper_uid_map = parse_map(&key, &val()?)?,
                "upper_gidmapping" => self.upper_gid_map = parse_map(&key, &val()?)?,
                "timeout" => {
                    let secs: f64 = parse_num(&key, &val()?)?;
                    if !(0.0..=1e9).contains(&secs) {
                        return Err(OptionsError::BadValue(key));
                    }
                    self.upper_ttl = Duration::from_secs_f64(secs);
                }
                "fsname" => self.fsname = val()?,
                k if k.starts_with("x-") => {}
                k if IGNORED_OPTIONS.contains(&k) => {}
                _ => return Err(OptionsError::Unknown(opt)),
            }
        }
        Ok(())
    }

    /// Check that the options make a mount.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.lowers.is_empty() {
            return Err(OptionsError::NoLower);
        }
        if self.upper.is_some() != self.work.is_some() {
            return Err(OptionsError::UpperWithoutWork);
        }
        Ok(())
    }

    /// The uid a file stored with `disk` is shown with (`in_upper`: the file is in the upper layer).
    pub fn shown_uid(&self, disk: u32, in_upper: bool) -> u32 {
        match self.squash_uid {
            Some(u) => u,
            None if in_upper && !self.upper_uid_map.is_identity() => self.upper_uid_map.shown(disk),
            None => self.uid_map.shown(disk),
        }
    }

    /// See `shown_uid`.
    pub fn shown_gid(&self, disk: u32, in_upper: bool) -> u32 {
        match self.squash_gid {
            Some(g) => g,
            None if in_upper && !self.upper_gid_map.is_identity() => self.upper_gid_map.shown(disk),
            None => self.gid_map.shown(disk),
        }
    }

    /// The uid stored in the upper layer for a shown uid (new files, chown, copy-up).
    pub fn upper_disk_uid(&self, shown: u32) -> u32 {
        if self.upper_uid_map.is_identity() {
            self.uid_map.disk(shown)
        } else {
            self.upper_uid_map.disk(shown)
        }
    }

    /// See `upper_disk_uid`.
    pub fn upper_disk_gid(&self, shown: u32) -> u32 {
        if self.upper_gid_map.is_identity() {
            self.gid_map.disk(shown)
        } else {
            self.upper_gid_map.disk(shown)
        }
    }

    /// Whether the mount accepts changes.
    pub fn writable(&self) -> bool {
        self.upper.is_some() && !self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fuse_overlayfs_string() {
        let c = Config::from_mount_options(
            "lowerdir=/a:/b\\:c,upperdir=/u,workdir=/w,nodev,threads=2,fsync=0,x-systemd.foo",
        )
        .unwrap();
        assert_eq!(c.lowers, vec![PathBuf::from("/a"), PathBuf::from("/b:c")]);
        assert_eq!(c.upper, Some(PathBuf::from("/u")));
        assert!(!c.dev && c.suid && !c.fsync);
        assert_eq!(c.threads, 2);
        // Without threads=N: one worker per CPU, 2 to 4.
        let cpus = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(str::trim)
                    .map(String::from)
            })
            .unwrap();
        let n: usize = cpus
            .split(',')
            .map(|r| match r.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            })
            .sum();
        assert_eq!(Config::default().threads, n.clamp(2, 4));
    }

    #[test]
    fn rejects_unknown_and_incomplete() {
        assert_eq!(
            Config::from_mount_options("lowerdir=/a,frobnicate").unwrap_err(),
            OptionsError::Unknown("frobnicate".into())
        );
        assert_eq!(
            Config::from_mount_options("upperdir=/u").unwrap_err(),
            OptionsError::NoLower
        );
        assert_eq!(
            Config::from_mount_options("lowerdir=/a,upperdir=/u").unwrap_err(),
            OptionsError::UpperWithoutWork
        );
        assert!(Config::from_mount_options("lowerdir=/a,threads=x").is_err());
        assert!(Config::from_mount_options("lowerdir=/a,uidmapping=1:2").is_err());
    }

    #[test]
    fn id_mappings_apply_per_layer() {
        let c = Config::from_mount_options(
            "lowerdir=/a,upperdir=/u,workdir=/w,uidmapping=0:10:100,gidmapping=0:20:100,upper_uidmapping=100000:0:65536",
        )
        .unwrap();
        // Lower files through uidmapping, upper files through upper_uidmapping.
        assert_eq!(c.shown_uid(5, false), 15);
        assert_eq!(c.shown_uid(100005, true), 5);
        assert_eq!(c.upper_disk_uid(5), 100005);
        // No upper gid map: gidmapping applies to the upper layer too.
        assert_eq!(c.shown_gid(5, true), 25);
        assert_eq!(c.upper_disk_gid(25), 5);
    }
}
