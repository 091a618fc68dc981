//! Startup end to end: process spawned → the container's /bin/true has exited → teardown done, for every
//! subject on the same busybox rootfs; strata's samples also carry its per-phase breakdown.

use std::sync::Arc;
use std::time::Duration;

use super::namespaces::NET_QUIESCE;
use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite};
use crate::subjects::{StartEnv, Starter, Subject};

pub struct StartupCase {
    pub subject: Subject,
    pub env: StartEnv,
    starter: Option<Arc<dyn Starter>>,
}

impl StartupCase {
    pub fn new(subject: Subject, env: StartEnv) -> Self {
        StartupCase {
            subject,
            env,
            starter: None,
        }
    }
}

impl Case for StartupCase {
    fn subject(&self) -> String {
        self.subject.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        let starter = self.subject.prepare(&self.env)?;
        // One untimed start proves the subject works here before it is measured.
        starter.start()?;
        self.starter = Some(starter);
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        self.starter
            .as_ref()
            .ok_or_else(|| CaseError::failed("not prepared"))?
            .start()
    }
    fn teardown(&mut self) {
        self.starter = None;
    }
    /// Every subject makes a net namespace.
    fn quiesce(&self) -> Duration {
        NET_QUIESCE
    }
}

pub const METHOD: &str = "Wall time from spawning the subject (clone for the floor, fork+exec of the tool for the \
    others) until /bin/true has exited and the tool has returned, teardown included (runc/crun: run + delete \
    --force; docker: run --rm; strata: run --rm). Same busybox rootfs for all; namespaces pid, mnt, uts, ipc, \
    net; the runtimes get memory 256 MiB, 1 cpu, 512 pids. crun is started with setns into a held private mount \
    namespace in which /sys/fs/cgroup/unified is unmounted (crun refuses hybrid hosts otherwise); that setns \
    happens between fork and exec and is not counted as crun's own cost. 15 ms quiesce after each sample \
    (netns teardown is asynchronous). strata's parts are its own STRATA_PHASES timestamps.";

pub fn groups(_suite: Suite) -> Vec<Group> {
    let method = format!(
        "{METHOD} Rootfs: {}. {}",
        crate::subjects::rootfs_description(),
        crate::subjects::RUN_DIR_METHOD
    );
    let mut g = Group::new(Family::Startup, "true", method)
        .reference("floor")
        .reference("strata-kernel");
    for s in Subject::ALL {
        g = g.case(StartupCase::new(s, StartEnv::default()));
    }
    vec![g]
}
