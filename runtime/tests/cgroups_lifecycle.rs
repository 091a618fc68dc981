//! Create / open / list / join / stats / kill_all / remove on the host's real cgroups, the
//! failure paths (nothing left behind), and the v2 backend on the host's real cgroup2 mount.

mod cgroups_support;

use std::time::{Duration, Instant};

use cgroups_support::{BUSYBOX, Gated, TestParent, cgroup2_mount, disk_tempdir};
use strata_runtime::cgroups::{self, CgroupError, ContainerCgroup, Resources};

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stats_are_real_and_kill_all_then_remove_leaves_nothing() {
    let parent = TestParent::new();
    let res = Resources {
        memory: Some(128 << 20),
        pids: Some(64),
        cpus: Some(1.0),
        ..Default::default()
    };
    let cg = ContainerCgroup::create(&parent.name, "live", &res).unwrap();
    let dir = disk_tempdir();
    let file = dir.path().join("io");
    let mut p = Gated::spawn(&format!(
        "for i in 1 2 3; do {BUSYBOX} sleep 60 & done; \
         {BUSYBOX} dd if=/dev/zero of={} bs=64k count=32 oflag=direct 2>/dev/null; \
         while :; do :; done",
        file.display()
    ));
    p.join(&cg);
    let before = cg.stats().unwrap();
    p.release();
    wait_for("the direct writes to be counted", || {
        cg.stats().unwrap().io_write_bytes >= 2 << 20
    });
    let s1 = cg.stats().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let s2 = cg.stats().unwrap();
    assert!(
        s2.cpu_usage_ns > s1.cpu_usage_ns && s1.cpu_usage_ns > before.cpu_usage_ns,
        "{before:?} {s1:?} {s2:?}"
    );
    assert!(s2.memory_usage_bytes > 0);
    assert!(s2.memory_peak_bytes.unwrap() >= s2.memory_usage_bytes);
    assert_eq!(s2.memory_limit_bytes, Some(128 << 20));
    assert!(s2.pids_current >= 4, "{s2:?}");
    assert_eq!(s2.pids_limit, Some(64));
    assert_eq!(s2.oom_kills, 0);

    // The same cgroup seen by another strata process (stats, exec, gc).
    let again = ContainerCgroup::open(&parent.name, "live").unwrap();
    assert_eq!(again.procs(), cg.procs());
    assert!(cg.procs().contains(&p.pid()));
    assert_eq!(
        ContainerCgroup::list(&parent.name).unwrap(),
        vec!["live".to_string()]
    );

    again.kill_all().unwrap();
    assert!(cg.procs().is_empty());
    let _ = p.child.wait();
    cg.remove().unwrap();
    assert!(matches!(
        ContainerCgroup::open(&parent.name, "live"),
        Err(CgroupError::NotFound { .. })
    ));
    assert!(ContainerCgroup::list(&parent.name).unwrap().is_empty());
    parent.finish();
}

#[test]
fn a_process_joins_through_path_for_exec() {
    let parent = TestParent::new();
    let cg = ContainerCgroup::create(&parent.name, "exec", &Resources::default()).unwrap();
    let files: Vec<String> = cg
        .path_for_exec()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(!files.is_empty());
    // Like `strata exec`'s child: it writes "0" (itself) into every cgroup.procs, then runs.
    let mut p = Gated::spawn(&format!(
        "for f in {}; do echo 0 > $f || exit 1; done; exec {BUSYBOX} sleep 60",
        files.join(" ")
    ));
    p.release();
    let pid = p.pid();
    wait_for("the process to join", || cg.procs().contains(&pid));
    // In every hierarchy, not just one.
    for f in &files {
        wait_for(f, || {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .any(|l| l == pid.to_string())
        });
    }
    cg.kill_all().unwrap();
    cg.remove().unwrap();
    parent.finish();
}

#[test]
fn kill_all_catches_a_forking_process() {
    let parent = TestParent::new();
    let cg = ContainerCgroup::create(&parent.name, "forky", &Resources::default()).unwrap();
    // Keeps forking short-lived children: a kill that raced with fork would miss some.
    let mut p = Gated::spawn(&format!(
        "while :; do {BUSYBOX} true & {BUSYBOX} sleep 60 & done"
    ));
    p.join(&cg);
    p.release();
    wait_for("a few processes", || cg.procs().len() >= 10);
    cg.kill_all().unwrap();
    assert!(cg.procs().is_empty());
    cg.remove().unwrap();
    parent.finish();
}

#[test]
fn rejected_and_invalid_limits_leave_nothing_behind() {
    let parent = TestParent::new();
    // Invalid before anything is created.
    let e = ContainerCgroup::create(
        &parent.name,
        "bad",
        &Resources {
            cpus: Some(0.001),
            ..Default::default()
        },
    )
    .expect_err("cpus 0.001 must be refused");
    assert!(
        matches!(e, CgroupError::InvalidLimit { limit: "cpus", .. }),
        "{e}"
    );
    assert!(
        parent.leftovers().is_empty(),
        "nothing may exist for an invalid limit"
    );

    // Rejected by the kernel (no CPU 999 here): the error names the limit and the CPU, the leaf is gone.
    let e = ContainerCgroup::create(
        &parent.name,
        "bad",
        &Resources {
            cpuset: Some("999".into()),
            ..Default::default()
        },
    )
    .expect_err("cpuset 999 must be refused");
    let msg = e.to_string();
    assert!(
        msg.contains("--cpuset") && msg.contains("CPU 999 is not online") && !msg.contains('\n'),
        "{msg}"
    );
    for dir in parent.leftovers() {
        assert!(
            !dir.join("bad").exists(),
            "{} left behind",
            dir.join("bad").display()
        );
    }

    // A device that is not a block device.
    let e = ContainerCgroup::create(
        &parent.name,
        "bad",
        &Resources {
            device_write_bps: vec![("/dev/null".into(), 1 << 20)],
            ..Default::default()
        },
    )
    .expect_err("/dev/null must be refused");
    assert!(e.to_string().contains("/dev/null"), "{e}");

    // A name in use.
    let cg = ContainerCgroup::create(&parent.name, "dup", &Resources::default()).unwrap();
    let e =
        ContainerCgroup::create(&parent.name, "dup", &Resources::default()).expect_err("duplicate");
    assert!(matches!(e, CgroupError::AlreadyExists { .. }), "{e}");
    cg.remove().unwrap();

    // Names that would escape the parent.
    for bad in ["..", "a/b", ""] {
        assert!(ContainerCgroup::create(&parent.name, bad, &Resources::default()).is_err());
    }
    parent.finish();
}

#[test]
fn v2_backend_on_the_real_cgroup2_mount() {
    let parent = TestParent::new();
    let root = cgroup2_mount();
    let cg =
        ContainerCgroup::create_v2_at(&root, &parent.name, "v2", &Resources::default()).unwrap();
    assert!(cg.is_v2());
    assert!(
        cg.v2_dir_fd().is_some(),
        "CLONE_INTO_CGROUP needs the directory fd"
    );
    assert_eq!(
        cg.path_for_exec(),
        vec![root.join(&parent.name).join("v2/cgroup.procs")]
    );
    let mut p = Gated::spawn(&format!("{BUSYBOX} sleep 60 & while :; do :; done"));
    p.join(&cg);
    p.release();
    wait_for("both processes", || cg.procs().len() == 2);
    let s1 = cg.stats().unwrap();
    wait_for("cpu time to grow", || {
        cg.stats().unwrap().cpu_usage_ns > s1.cpu_usage_ns
    });
    let opened = ContainerCgroup::open_v2_at(&root, &parent.name, "v2").unwrap();
    opened.kill_all().unwrap(); // cgroup.kill
    assert!(cg.procs().is_empty());
    cg.remove().unwrap();

    // A limit whose controller the hierarchy does not delegate: named error, nothing left.
    let delegated = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap();
    let res = Resources {
        pids: Some(10),
        ..Default::default()
    };
    match ContainerCgroup::create_v2_at(&root, &parent.name, "lim", &res) {
        Ok(cg) => {
            assert!(
                delegated.contains("pids"),
                "pids.max set without the pids controller?"
            );
            assert_eq!(cg.stats().unwrap().pids_limit, Some(10));
            cg.remove().unwrap();
        }
        Err(e) => {
            assert!(
                !delegated.contains("pids"),
                "pids is delegated but the limit failed: {e}"
            );
            assert!(
                matches!(
                    e,
                    CgroupError::ControllerUnavailable {
                        controller: "pids",
                        ..
                    }
                ),
                "{e}"
            );
            assert!(!root.join(&parent.name).join("lim").exists());
        }
    }
    parent.finish();
}

#[test]
fn detection_matches_the_mounts() {
    let mode = cgroups::detect();
    let unified_is_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    assert_eq!(mode == cgroups::CgroupMode::V2, unified_is_v2);
    let ctrl = cgroups::available_controllers();
    for c in ["memory", "pids", "cpu"] {
        assert!(ctrl.iter().any(|x| x == c), "{c} missing from {ctrl:?}");
    }
}

/// "MAJ:MIN" of the first whole disk of the host that is not a virtual block device.
fn a_real_disk() -> String {
    std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            !["loop", "ram", "zram", "nbd", "sr", "fd"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .find_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .map(|d| d.trim().to_string())
        .expect("this test needs a disk in /sys/block other than loop/ram/zram/nbd devices")
}

#[test]
fn a_new_parent_clones_its_cpuset_and_update_keeps_the_io_throttles() {
    let parent = TestParent::new();
    let disk = a_real_disk();
    // A rate no test IO comes near, on the host's own disk.
    let rate: u64 = 1 << 40;
    let res = Resources {
        device_write_bps: vec![(disk.clone(), rate)],
        ..Default::default()
    };
    let cg = ContainerCgroup::create(&parent.name, "io", &res).unwrap();
    // Changing another limit leaves the container's own throttle rule in place.
    cg.update(&Resources {
        memory: Some(64 << 20),
        ..Default::default()
    })
    .unwrap();
    let v2 = cgroups::detect() == cgroups::CgroupMode::V2;
    let (file, want) = if v2 {
        ("io.max", format!("{disk} rbps=max wbps={rate}"))
    } else {
        ("blkio.throttle.write_bps_device", format!("{disk} {rate}"))
    };
    let rules: String = cgroups_support::cgroup_mounts()
        .iter()
        .map(|m| m.join(&parent.name).join("io").join(file))
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    assert!(rules.contains(&want), "{file} after update: {rules:?}");
    if !v2 {
        // The parent strata made hands its CPUs and memory nodes to each new container cpuset.
        let cpuset = cgroups_support::cgroup_mounts()
            .into_iter()
            .find(|m| m.join("cpuset.cpus").exists() && m.join(&parent.name).exists())
            .expect("a cpuset hierarchy holding the parent");
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap().trim().to_string();
        assert_eq!(
            read(cpuset.join(&parent.name).join("cgroup.clone_children")),
            "1"
        );
        let cpus = read(cpuset.join(&parent.name).join("io").join("cpuset.cpus"));
        assert!(!cpus.is_empty());
        assert_eq!(cpus, read(cpuset.join("cpuset.cpus")));
    }
    cg.remove().unwrap();
    parent.finish();
}
