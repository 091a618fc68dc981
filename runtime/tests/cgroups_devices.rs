//! Device programs on cgroup v2 (the host's cgroup2 hierarchy; on a hybrid host the unified mount):
//! a program strata loads is pinned in a bpffs, and a later cgroup with the same rules gets the pinned
//! program attached instead of a new load.

mod cgroups_support;

use std::os::fd::AsFd;
use std::path::Path;

use cgroups_support::{Gated, TestParent, cgroup2_mount};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use strata_runtime::cgroups::devices::{self, attach_pinned};
use strata_runtime::cgroups::{ContainerCgroup, Resources};

/// A bpffs of this test's own on a temporary directory, unmounted when dropped.
struct BpfFs(tempfile::TempDir);

impl BpfFs {
    fn new() -> BpfFs {
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some("bpf"),
            dir.path(),
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .expect("this test needs to mount a bpffs (CONFIG_BPF_SYSCALL)");
        BpfFs(dir)
    }
    fn pins(&self) -> std::path::PathBuf {
        self.0.path().join("strata")
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = umount2(self.0.path(), MntFlags::MNT_DETACH);
    }
}

/// Whether a process in `cg` can open /dev/fuse (10:229, outside Docker's default devices).
fn opens_dev_fuse(cg: &ContainerCgroup) -> bool {
    let mut p = Gated::spawn("if (exec 3<>/dev/fuse); then echo opened >&2; fi");
    p.join(cg);
    p.release();
    p.stderr().contains("opened")
}

#[test]
fn a_pinned_device_program_is_attached_instead_of_a_new_load() {
    cgroups_support::require_root_and_busybox();
    assert!(
        Path::new("/dev/fuse").exists(),
        "this test needs /dev/fuse (the device it opens)"
    );
    let parent = TestParent::new();
    let root = cgroup2_mount();
    let bpffs = BpfFs::new();
    let rules = devices::docker_default();
    let cgroup = |name: &str| {
        ContainerCgroup::create_v2_at(&root, &parent.name, name, &Resources::default()).unwrap()
    };

    let free = cgroup("free");
    assert!(opens_dev_fuse(&free), "without a program /dev/fuse opens");
    let a = cgroup("a");
    attach_pinned(a.v2_dir_fd().unwrap().as_fd(), &rules, &bpffs.pins()).unwrap();
    assert!(!opens_dev_fuse(&a), "Docker's default rules deny /dev/fuse");
    let pins: Vec<_> = std::fs::read_dir(bpffs.pins())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pins.len(), 1, "one pinned program: {pins:?}");

    // Swap the pin for a program that allows everything: a cgroup with the same rules must now get
    // that one, which shows the pin is used rather than a new load.
    std::fs::remove_file(&pins[0]).unwrap();
    let allow_all = strata_runtime::sys::load_device_program(&devices::program(&[])).unwrap();
    let path = std::ffi::CString::new(pins[0].as_os_str().as_encoded_bytes()).unwrap();
    strata_runtime::sys::bpf_obj_pin(allow_all.as_fd(), &path).unwrap();
    let b = cgroup("b");
    attach_pinned(b.v2_dir_fd().unwrap().as_fd(), &rules, &bpffs.pins()).unwrap();
    assert!(
        opens_dev_fuse(&b),
        "the pinned program was not the one attached"
    );

    // A pin that is no program (here an empty directory in its place) is replaced by a fresh load.
    std::fs::remove_file(&pins[0]).unwrap();
    std::fs::create_dir(&pins[0]).unwrap();
    let c = cgroup("c");
    attach_pinned(c.v2_dir_fd().unwrap().as_fd(), &rules, &bpffs.pins()).unwrap();
    assert!(!opens_dev_fuse(&c), "a bad pin must not weaken the rules");

    for cg in [free, a, b, c] {
        cg.remove().unwrap();
    }
    parent.finish();
}
