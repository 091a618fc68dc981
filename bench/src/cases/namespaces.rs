//! Namespace cases: clone() with each flag against a plain clone, unshare() of each, setns() into an
//! existing one, all together, and teardown (release of the last process of a namespace) as its own figure.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;

use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite};
use crate::sys::{self, CLONE_NEWTIME, CloneStack, HolderSetup, NsHolder};

/// Net namespaces are freed by a kernel worker after the last process is gone; cases involving one pause
/// this long after each sample so that backlog does not land in the next sample.
pub const NET_QUIESCE: Duration = Duration::from_millis(15);

/// A namespace kind: name (as in /proc/<pid>/ns/), clone flag.
#[derive(Clone, Copy)]
pub struct Kind {
    pub name: &'static str,
    pub flag: CloneFlags,
}

pub const KINDS: [Kind; 8] = [
    Kind {
        name: "pid",
        flag: CloneFlags::CLONE_NEWPID,
    },
    Kind {
        name: "net",
        flag: CloneFlags::CLONE_NEWNET,
    },
    Kind {
        name: "mnt",
        flag: CloneFlags::CLONE_NEWNS,
    },
    Kind {
        name: "ipc",
        flag: CloneFlags::CLONE_NEWIPC,
    },
    Kind {
        name: "uts",
        flag: CloneFlags::CLONE_NEWUTS,
    },
    Kind {
        name: "user",
        flag: CloneFlags::CLONE_NEWUSER,
    },
    Kind {
        name: "cgroup",
        flag: CloneFlags::CLONE_NEWCGROUP,
    },
    Kind {
        name: "time",
        flag: CLONE_NEWTIME,
    },
];

/// Every kind clone(2) accepts, together.
pub fn all_clone_flags() -> CloneFlags {
    KINDS
        .iter()
        .filter(|k| k.name != "time")
        .fold(CloneFlags::empty(), |a, k| a | k.flag)
}

fn time_ns_available() -> bool {
    std::path::Path::new("/proc/self/ns/time").exists()
}

fn quiesce_for(flags: CloneFlags) -> Duration {
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        NET_QUIESCE
    } else {
        Duration::ZERO
    }
}

fn sys_err(e: sys::SysError) -> CaseError {
    CaseError::failed(e)
}

struct CloneCase {
    subject: &'static str,
    flags: CloneFlags,
    stack: CloneStack,
}

impl Case for CloneCase {
    fn subject(&self) -> String {
        self.subject.into()
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let t = Instant::now();
        sys::clone_and_exit(&mut self.stack, self.flags).map_err(sys_err)?;
        Ok(t.elapsed().into())
    }
    fn quiesce(&self) -> Duration {
        quiesce_for(self.flags)
    }
}

struct UnshareCase {
    subject: &'static str,
    flags: CloneFlags,
    stack: CloneStack,
}

impl Case for UnshareCase {
    fn subject(&self) -> String {
        self.subject.into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        if self.flags.contains(CLONE_NEWTIME) && !time_ns_available() {
            return Err(CaseError::Skipped("kernel has no time namespaces".into()));
        }
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        Ok(sys::time_unshare(&mut self.stack, self.flags)
            .map_err(sys_err)?
            .into())
    }
    fn quiesce(&self) -> Duration {
        quiesce_for(self.flags)
    }
}

fn spawn_holder(kind: Kind) -> CaseResult<NsHolder> {
    let setup = if kind.name == "time" {
        HolderSetup {
            unshare: kind.flag,
            ..Default::default()
        }
    } else {
        HolderSetup::default()
    };
    let flags = if kind.name == "time" {
        CloneFlags::empty()
    } else {
        kind.flag
    };
    NsHolder::spawn(flags, &setup).map_err(sys_err)
}

fn ns_file(kind: Kind) -> &'static str {
    if kind.name == "time" {
        "time_for_children"
    } else {
        kind.name
    }
}

struct SetnsCase {
    kind: Kind,
    holder: Option<(NsHolder, OwnedFd)>,
    stack: CloneStack,
}

impl Case for SetnsCase {
    fn subject(&self) -> String {
        self.kind.name.into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        if self.kind.name == "time" && !time_ns_available() {
            return Err(CaseError::Skipped("kernel has no time namespaces".into()));
        }
        let holder = spawn_holder(self.kind)?;
        let fd = holder.ns_fd(ns_file(self.kind)).map_err(sys_err)?;
        self.holder = Some((holder, fd));
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let (_, fd) = self
            .holder
            .as_ref()
            .ok_or_else(|| CaseError::failed("not prepared"))?;
        Ok(sys::time_setns(&mut self.stack, fd.as_fd(), self.kind.flag)
            .map_err(sys_err)?
            .into())
    }
    fn teardown(&mut self) {
        if let Some((h, fd)) = self.holder.take() {
            drop(fd);
            let _ = h.release();
        }
    }
}

/// Time from telling the namespace's only process to exit until it is reaped.
struct TeardownCase {
    subject: &'static str,
    kind: Option<Kind>,
    flags: CloneFlags,
}

impl Case for TeardownCase {
    fn subject(&self) -> String {
        self.subject.into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        if self.kind.is_some_and(|k| k.name == "time") && !time_ns_available() {
            return Err(CaseError::Skipped("kernel has no time namespaces".into()));
        }
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let holder = match self.kind {
            Some(k) => spawn_holder(k)?,
            None => NsHolder::spawn(self.flags, &HolderSetup::default()).map_err(sys_err)?,
        };
        let t = Instant::now();
        holder.release().map_err(sys_err)?;
        Ok(t.elapsed().into())
    }
    fn quiesce(&self) -> Duration {
        quiesce_for(self.flags)
    }
}

pub fn groups(_suite: Suite) -> Vec<Group> {
    let mut clone = Group::new(
        Family::Namespaces,
        "clone",
        "clone(2) with one CLONE_NEW* flag (or none, or all clone accepts) from the bench process; the child \
         exits at once; timed from before clone until waitpid returns. Cases with a net namespace pause 15 ms \
         after each sample (quiesce) so the kernel's asynchronous netns cleanup does not land in the next one.",
    )
    .reference("none")
    .case(CloneCase { subject: "none", flags: CloneFlags::empty(), stack: CloneStack::default() });
    for k in KINDS.iter().filter(|k| k.name != "time") {
        clone = clone.case(CloneCase {
            subject: k.name,
            flags: k.flag,
            stack: CloneStack::default(),
        });
    }
    clone = clone.case(CloneCase {
        subject: "all",
        flags: all_clone_flags(),
        stack: CloneStack::default(),
    });

    let mut unshare = Group::new(
        Family::Namespaces,
        "unshare",
        "unshare(2) of one flag in a fresh single-threaded child, timed inside the child with CLOCK_MONOTONIC \
         around the call alone (the child's creation and exit are not counted). \"none\" is unshare(0).",
    )
    .reference("none")
    .case(UnshareCase { subject: "none", flags: CloneFlags::empty(), stack: CloneStack::default() });
    for k in KINDS {
        unshare = unshare.case(UnshareCase {
            subject: k.name,
            flags: k.flag,
            stack: CloneStack::default(),
        });
    }
    let all = all_clone_flags()
        | if time_ns_available() {
            CLONE_NEWTIME
        } else {
            CloneFlags::empty()
        };
    unshare = unshare.case(UnshareCase {
        subject: "all",
        flags: all,
        stack: CloneStack::default(),
    });

    let mut setns = Group::new(
        Family::Namespaces,
        "setns",
        "setns(2) into a namespace held open by a sleeping holder process, timed inside a fresh \
         single-threaded child around the call alone.",
    );
    for k in KINDS {
        setns = setns.case(SetnsCase {
            kind: k,
            holder: None,
            stack: CloneStack::default(),
        });
    }

    let mut teardown = Group::new(
        Family::Namespaces,
        "teardown",
        "Teardown as its own figure: a holder process alone in a new namespace is told to exit (pipe closed) \
         and timed until waitpid returns. For net this is the synchronous part only; the kernel frees the \
         namespace in a worker afterwards, so net cases quiesce 15 ms between samples.",
    )
    .reference("none")
    .case(TeardownCase { subject: "none", kind: None, flags: CloneFlags::empty() });
    for k in KINDS {
        teardown = teardown.case(TeardownCase {
            subject: k.name,
            kind: Some(k),
            flags: k.flag,
        });
    }
    teardown = teardown.case(TeardownCase {
        subject: "all",
        kind: None,
        flags: all_clone_flags(),
    });
    vec![clone, unshare, setns, teardown]
}
