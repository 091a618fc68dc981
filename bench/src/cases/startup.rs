//! Startup end to end: process spawned → the container's /bin/true has exited → teardown done, for every
//! subject on the same busybox rootfs; strata's samples also carry its per-phase breakdown.

use std::sync::Arc;
use std::time::Duration;

use super::namespaces::NET_QUIESCE;
use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite};
use crate::subjects::{StartEnv, Starter, Subject};

/// A case that times starts of one subject: a [`Subject`] from `env`, or a [`StrataVariant`].
pub struct StartupCase {
    source: Source,
    starts: Starts,
}

enum Source {
    Subject(Subject, StartEnv),
    Variant(StrataVariant),
}

/// A prepared subject measured by starting it again and again.
#[derive(Default)]
struct Starts(Option<Arc<dyn Starter>>);

impl Starts {
    /// One untimed start proves the subject works here before it is measured; then its programs
    /// (with their libraries) and the container's /bin/true leave the page cache, for the warm-up
    /// starts to read back (see [`crate::page_cache`]).
    pub fn prepare(&mut self, starter: Arc<dyn Starter>) -> CaseResult<()> {
        starter.start()?;
        let mut files = crate::page_cache::with_libraries(&starter.programs());
        files.extend(crate::subjects::container_true_files());
        crate::page_cache::drop_cached(&files);
        self.0 = Some(starter);
        Ok(())
    }
    pub fn run_once(&self) -> CaseResult<Sample> {
        self.0
            .as_ref()
            .ok_or_else(|| CaseError::failed("not prepared"))?
            .start()
    }
    pub fn teardown(&mut self) {
        self.0 = None;
    }
}

impl StartupCase {
    pub fn new(subject: Subject, env: StartEnv) -> Self {
        StartupCase {
            source: Source::Subject(subject, env),
            starts: Starts::default(),
        }
    }
}

impl From<StrataVariant> for StartupCase {
    fn from(v: StrataVariant) -> Self {
        StartupCase {
            source: Source::Variant(v),
            starts: Starts::default(),
        }
    }
}

impl Case for StartupCase {
    fn subject(&self) -> String {
        match &self.source {
            Source::Subject(s, _) => s.name().into(),
            Source::Variant(v) => v.subject.into(),
        }
    }
    fn prepare(&mut self) -> CaseResult<()> {
        let starter = match &self.source {
            Source::Subject(s, env) => s.prepare(env)?,
            Source::Variant(v) => v.starter()?,
        };
        self.starts.prepare(starter)
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        self.starts.run_once()
    }
    fn teardown(&mut self) {
        self.starts.teardown();
    }
    /// Every subject makes a net namespace.
    fn quiesce(&self) -> Duration {
        NET_QUIESCE
    }
}

pub const METHOD: &str = "Wall time from spawning the subject until /bin/true has exited and the tool has returned, teardown included (runc/crun: run + delete \
    --force; strata: run --rm). floor-exec is the floor's own code run by a program of its own, strata-floor, \
    spawned and reaped as the runtimes are: the floor plus what being a program costs any runtime that is one \
    (fork, exec, libc start-up, exit). The floor's child shares the bench's memory until its exec \
    (CLONE_VM | CLONE_VFORK, as posix_spawn) and every tool is spawned with posix_spawn, so no sample \
    pays for a copy of the bench's address space (results whose method lacks this sentence do: a plain clone for \
    the floor, a fork for crun; late in a standard run that copy made the floor 3.8 ms against 1.5 ms). \
    Same busybox image for all; namespaces pid, mnt, uts, ipc, net; the runtimes get \
    memory 256 MiB, 1 cpu, 512 pids. crun is spawned by a bench thread that has entered a held private mount namespace in \
    which /sys/fs/cgroup/unified is unmounted (crun refuses hybrid hosts otherwise); the thread's setns there \
    and back happens outside the timed part. docker-R: `docker run --rm --runtime R --network none \
    --memory 256m --cpus 1 --pids-limit 512 IMAGE /bin/true` against the one running daemon (overlay2 storage), \
    with R = runc (Docker's default; this subject was `docker` in older results), crun (registered by \
    scripts/docker-up as crun-hybrid, crun behind the same unmount of /sys/fs/cgroup/unified in its own mount \
    namespace) or strata (registered as /usr/local/bin/strata); a runtime the daemon lacks is skipped. \
    podman-R: `podman --runtime PATH run --rm --network none --memory 256m --cpus 1 --pids-limit 512 \
    localhost/strata-busybox:latest /bin/true` (podman 4 with conmon; cgroup manager cgroupfs) on a private \
    podman root per subject (containers-storage overlay driver on the kernel overlay, graphroot on the temp \
    dir's disk, run root and libpod tmp dir on the bench's tmpfs, the image loaded from its docker-save \
    archive), with PATH = runc, crun-hybrid (crun through scripts/crun-hybrid on hybrid hosts) or the strata \
    binary the strata subjects run. 15 ms quiesce after each sample (netns teardown is asynchronous). strata's \
    parts are its own STRATA_PHASES timestamps, plus launch (from the spawn to its first phase: fork, exec, \
    argument parsing, name claim) and exit (from its last phase to the reap: the phase file, process exit), \
    from the bench's CLOCK_MONOTONIC readings around the spawn.";

/// A [`StrataVariant`]'s judge of its check's output (trimmed): why it is not the subject's.
pub type Expect = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// `strata run --fs kernel` of /bin/true as the startup/true group's strata-kernel subject runs it, with
/// `extra` flags: a variant of strata compared with its default in its own group. Before it is measured,
/// its container runs `check` once, whose output `expect` judges, so the subject is what it claims.
pub struct StrataVariant {
    pub subject: &'static str,
    pub extra: &'static [&'static str],
    pub check: &'static [&'static str],
    pub expect: Expect,
}

impl StrataVariant {
    /// Checks the variant's container, then its starter.
    fn starter(&self) -> CaseResult<Arc<dyn Starter>> {
        let bin = crate::subjects::strata_binary()?;
        let seen = crate::subjects::strata_kernel_output(&bin, self.extra, self.check)?;
        (self.expect)(seen.trim()).map_err(CaseError::failed)?;
        crate::subjects::strata("kernel", &StartEnv::default(), self.extra)
    }
}

/// Who makes the container's network namespace in a startup/netns subject.
#[derive(Clone, Copy)]
enum NetnsMaker {
    /// strata's default: its set-up helper's task, started first thing (another mounts the overlay,
    /// detached).
    Helper,
    /// strata itself, right after the clone (hidden flag --no-setup-helper; the child mounts the overlay).
    AfterClone,
    /// clone3, with the other namespaces (hidden flag --netns-in-clone; no helper either).
    InClone,
}

/// startup/netns's subject. Each must give the container a namespace of its own with only lo, up
/// (IFF_UP | IFF_LOOPBACK = 0x9), as its /sys shows.
fn netns_variant(maker: NetnsMaker) -> StrataVariant {
    let (subject, extra): (_, &'static [&'static str]) = match maker {
        NetnsMaker::Helper => ("strata-kernel", &[]),
        NetnsMaker::AfterClone => ("strata-kernel-no-helper", &["--no-setup-helper"]),
        NetnsMaker::InClone => ("strata-kernel-netns-in-clone3", &["--netns-in-clone"]),
    };
    StrataVariant {
        subject,
        extra,
        check: &[
            "/bin/sh",
            "-c",
            "echo $(ls /sys/class/net) $(cat /sys/class/net/lo/flags)",
        ],
        expect: Box::new(|seen| {
            (seen == "lo 0x9").then_some(()).ok_or_else(|| {
                format!("the container's network is \"{seen}\", expected \"lo 0x9\" (only lo, up)")
            })
        }),
    }
}

pub fn groups(_suite: Suite) -> Vec<Group> {
    let podman_runtimes = [
        Subject::PodmanRunc,
        Subject::PodmanCrun,
        Subject::PodmanStrata,
    ]
    .iter()
    .map(|&s| match crate::subjects::podman_runtime(s) {
        Ok(p) => format!("{} = {}", s.name(), p.display()),
        Err(e) => format!("{}: {e}", s.name()),
    })
    .collect::<Vec<_>>()
    .join(", ");
    let floor_program = match crate::subjects::floor_binary() {
        Ok(p) => format!("strata-floor = {}", p.display()),
        Err(e) => format!("strata-floor: {e}"),
    };
    let method = format!(
        "{METHOD} Rootfs of floor, strata, crun and runc: {}. {floor_program}. Runtimes given to podman: \
         {podman_runtimes}. {} {}",
        crate::subjects::rootfs_description(),
        crate::subjects::RUN_DIR_METHOD,
        crate::page_cache::METHOD
    );
    let mut g = Group::new(Family::Startup, "true", method)
        .reference("floor")
        .reference("floor-exec")
        .reference("strata-kernel");
    for s in Subject::ALL {
        g = g.case(StartupCase::new(s, StartEnv::default()));
    }
    let netns = Group::new(
        Family::Startup,
        "netns",
        format!(
            "Who makes the container's network namespace. End to end: `strata run --image {} --fs kernel \
             --rm --memory 256m --cpus 1 --pids 512 -- /bin/true` as the startup/true group's strata-kernel \
             subject runs it: strata-kernel (strata's default) has its set-up helper make the namespace \
             (unshare, loopback up) on the other CPU while strata prepares and clones, by a task started \
             before argument parsing that runs a fixed list of raw system calls in strata's memory and fd \
             table (clone3 with CLONE_VM and CLONE_FILES; in results before 2026-12-07-vm-standard-7 the \
             helper was a forked process), and mount the overlay, detached, by another such task, which \
             the container process then attaches; the container process enters the namespace before its /sys mount. \
             strata-kernel-no-helper (hidden flag --no-setup-helper) makes the namespace itself right after \
             the clone (unshare, loopback up, setns back) while the container process mounts its rootfs, \
             overlay included. strata-kernel-netns-in-clone3 (hidden flag --netns-in-clone) has clone3 make \
             it with the other namespaces, as every other runtime does, and the container process brings \
             loopback up. Before it is measured each subject's container must \
             see only lo, up, in its /sys/class/net. 15 ms quiesce after each sample (netns teardown is \
             asynchronous). {} {}",
            crate::subjects::IMAGE,
            crate::subjects::RUN_DIR_METHOD,
            crate::page_cache::METHOD
        ),
    )
    .reference("strata-kernel-netns-in-clone3")
    .case(StartupCase::from(netns_variant(NetnsMaker::Helper)))
    .case(StartupCase::from(netns_variant(NetnsMaker::AfterClone)))
    .case(StartupCase::from(netns_variant(NetnsMaker::InClone)));
    vec![g, netns]
}
