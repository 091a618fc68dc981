//! The default filter's rules compiled as seccompiler lays them out: one linear chain of comparisons
//! (every syscall number in turn, lowest first), plus a second program for clone3's ENOSYS. strata used
//! this layout until the search tree of [`super::bpf`] replaced it; it is kept as the bench's comparison
//! (`strata-bench`'s security family installs both) and as the tree's oracle in the tests below.

use std::collections::BTreeMap;

use caps::{Capability, CapsHashSet};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::{CLONE_NS_FLAGS, SecurityError, denied_syscalls};

/// The programs for a capability set, in installation order (the kernel runs every installed filter
/// and keeps the lowest action). Compiled on every call.
pub fn programs(keep: &CapsHashSet) -> Result<Vec<BpfProgram>, SecurityError> {
    let err = |e: seccompiler::BackendError| SecurityError::Seccomp(e.to_string());
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SecurityError::Seccomp(e.to_string()))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, cap) in denied_syscalls() {
        if cap.is_none_or(|c| !keep.contains(&c)) {
            rules.insert(nr, Vec::new());
        }
    }
    let admin = keep.contains(&Capability::CAP_SYS_ADMIN);
    if !admin {
        let clone_rules = CLONE_NS_FLAGS
            .iter()
            .map(|&f| {
                SeccompRule::new(vec![SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(f),
                    f,
                )?])
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        rules.insert(libc::SYS_clone, clone_rules);
    }
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let mut programs = vec![BpfProgram::try_from(deny).map_err(err)?];
    if !admin {
        let mut r = BTreeMap::new();
        r.insert(libc::SYS_clone3, Vec::new());
        let enosys = SeccompFilter::new(
            r,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .map_err(err)?;
        programs.push(BpfProgram::try_from(enosys).map_err(err)?);
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::super::bpf::{self, tests::run};
    use super::*;

    /// What the kernel answers with `progs` installed in order: it runs every filter, newest first, and
    /// keeps the first answer with the lowest action (compared as a signed number, so KILL_PROCESS
    /// ranks below everything).
    fn verdict(progs: &[BpfProgram], arch: u32, nr: u32, arg0: u64) -> u32 {
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        progs.iter().rev().map(|p| run(p, arch, nr, arg0)).fold(
            libc::SECCOMP_RET_ALLOW,
            |best, r| {
                if action(r) < action(best) { r } else { best }
            },
        )
    }

    /// A foreign architecture of this machine (i386 on x86_64, 32-bit ARM on aarch64).
    #[cfg(target_arch = "x86_64")]
    const FOREIGN_ARCH: u32 = 0x4000_0003;
    #[cfg(target_arch = "aarch64")]
    const FOREIGN_ARCH: u32 = 0x4000_0028;

    fn assert_same(keep: &CapsHashSet) {
        let chain = programs(keep).unwrap();
        let tree = super::super::compile(keep).unwrap();
        let clone_flags = CLONE_NS_FLAGS.iter().copied().chain([
            0,
            libc::CLONE_VM as u64 | libc::CLONE_FS as u64,
            1 << 40,
        ]);
        for arch in [bpf::AUDIT_ARCH, FOREIGN_ARCH] {
            for nr in 0..=600u32 {
                for arg0 in clone_flags.clone() {
                    assert_eq!(
                        verdict(&tree, arch, nr, arg0),
                        verdict(&chain, arch, nr, arg0),
                        "arch {arch:#x} nr {nr} arg0 {arg0:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_chain_answers_as_the_tree_for_every_number() {
        let default_caps = super::super::default_caps();
        assert_same(&default_caps);
        let mut admin = default_caps.clone();
        admin.insert(Capability::CAP_SYS_ADMIN);
        assert_same(&admin);
        assert_same(&CapsHashSet::new());
    }

    #[test]
    fn the_chain_refuses_what_the_default_profile_refuses() {
        let chain = programs(&super::super::default_caps()).unwrap();
        assert_eq!(chain.len(), 2, "deny-list and clone3");
        let arch = bpf::AUDIT_ARCH;
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        assert_eq!(verdict(&chain, arch, libc::SYS_mount as u32, 0), eperm);
        assert_eq!(verdict(&chain, arch, libc::SYS_clone3 as u32, 0), enosys);
        let newpid = libc::CLONE_NEWPID as u64;
        assert_eq!(verdict(&chain, arch, libc::SYS_clone as u32, newpid), eperm);
        assert_eq!(
            verdict(&chain, arch, libc::SYS_getppid as u32, 0),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            verdict(&chain, FOREIGN_ARCH, libc::SYS_getppid as u32, 0),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        // The layout the tree replaced: a chain several times the tree's length.
        let tree = super::super::compile(&super::super::default_caps()).unwrap();
        assert!(
            chain[0].len() > 3 * tree[0].len(),
            "{} vs {}",
            chain[0].len(),
            tree[0].len()
        );
    }
}
