//! The io weight proven on a real BFQ device. Its own test binary, so nothing else runs beside it:
//! BFQ's split of a loop device over /dev/shm depends on the readers getting CPU time, and the other
//! limit tests (memory hog, fork bomb, busy loops) would take it.

mod cgroups_support;

use std::time::Duration;

use cgroups_support::{BUSYBOX, Gated, LoopDev, TestParent};
use strata_runtime::cgroups::{ContainerCgroup, Resources};

/// The weight file the kernel holds for `cg` and its content.
fn io_weight_file(cg: &ContainerCgroup) -> (std::path::PathBuf, String) {
    let file = cg
        .path_for_exec()
        .iter()
        .flat_map(|p| {
            [
                "blkio.bfq.weight",
                "blkio.weight",
                "io.bfq.weight",
                "io.weight",
            ]
            .map(|f| p.with_file_name(f))
        })
        .find(|p| p.exists())
        .expect("an io weight file in the container cgroup (BFQ with group scheduling)");
    let text = std::fs::read_to_string(&file).unwrap();
    (file, text)
}

/// On a kernel without BFQ no cgroup v1 weight file exists (CFQ, which had blkio.weight, is gone): the
/// weight cannot be enforced, so it must be refused by name, with nothing left behind, rather than
/// accepted and ignored.
fn io_weight_is_refused_without_bfq(parent: &TestParent) {
    eprintln!(
        "this kernel has no BFQ I/O scheduler (CONFIG_IOSCHED_BFQ): checking that --io-weight is \
         refused; the weight split itself cannot be measured here"
    );
    let res = Resources {
        io_weight: Some(500),
        ..Default::default()
    };
    let err = match ContainerCgroup::create(&parent.name, "weighted", &res) {
        Ok(cg) => {
            let _ = cg.remove();
            panic!("--io-weight was accepted on a kernel without a weight-aware I/O scheduler");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("io-weight") && err.contains("BFQ"),
        "the refusal names neither the flag nor BFQ: {err}"
    );
    let left: Vec<_> = parent
        .leftovers()
        .into_iter()
        .map(|dir| dir.join("weighted"))
        .filter(|p| p.exists())
        .collect();
    assert!(
        left.is_empty(),
        "a refused cgroup was left behind: {left:?}"
    );
}

#[test]
fn io_weight_splits_a_bfq_device() {
    // Weights only act under a weight-aware scheduler: BFQ, set on a private loop device (over
    // tmpfs, so the shared disk's load does not matter). Two readers keep it saturated with direct
    // I/O, each in its own region; the 1000-weight one must read clearly more than the 100 one.
    let parent = TestParent::new();
    // Sparse on tmpfs: the holes read as zeros and cost no memory. Each region is larger than a
    // reader gets through in the test (~5 GB/s here), so one dd runs the whole window: a dd that
    // ends and restarts leaves its queue empty meanwhile, and BFQ hands that time to the other.
    let region: u64 = 64 << 30;
    let dev = LoopDev::new(2 * region);
    let sched = format!(
        "/sys/block/{}/queue/scheduler",
        dev.path.trim_start_matches("/dev/")
    );
    // Through none first: a loop device keeps its queue (and BFQ's tunables, and its state) across
    // detach and re-attach, so a device reused from an earlier run starts from a fresh BFQ instance.
    std::fs::write(&sched, "none").unwrap_or_else(|e| panic!("writing none to {sched}: {e}"));
    if let Err(e) = std::fs::write(&sched, "bfq") {
        let offered = std::fs::read_to_string(&sched).unwrap_or_default();
        // Only a kernel built without BFQ (it offers no bfq, and none can be loaded: scripts/setup
        // tries) excuses this; any other failure is the test's.
        assert!(
            e.raw_os_error() == Some(libc::EINVAL) && !offered.contains("bfq"),
            "writing bfq to {sched}: {e} (offered: {offered})"
        );
        // cgroup v2 has a weight without BFQ (io.cost's io.weight), which this test does not set up.
        assert!(
            strata_runtime::cgroups::detect() != strata_runtime::cgroups::CgroupMode::V2,
            "this test needs the BFQ I/O scheduler on a cgroup v2 host (offered: {offered})"
        );
        io_weight_is_refused_without_bfq(&parent);
        drop(dev);
        parent.finish();
        return;
    }
    assert!(std::fs::read_to_string(&sched).unwrap().contains("[bfq]"));
    // A loop device looks like a fast non-rotational disk, for which BFQ may stop idling on a queue
    // that has no request in flight, and a direct-I/O dd never has more than one: without idling
    // the weights only act now and then (ratios of 0.8 and 9 came from the same set-up here).
    // strict_guarantees makes BFQ idle whenever the weights need it (5-12x in 12 runs, with a cargo
    // build beside it).
    let strict = sched.replace("scheduler", "iosched/strict_guarantees");
    std::fs::write(&strict, "1").unwrap_or_else(|e| panic!("writing 1 to {strict}: {e}"));
    let mk = |name: &str, w| {
        let res = Resources {
            io_weight: Some(w),
            ..Default::default()
        };
        ContainerCgroup::create(&parent.name, name, &res).unwrap()
    };
    let (heavy, light) = (mk("heavy", 1000), mk("light", 100));
    for (cg, w) in [(&heavy, "1000"), (&light, "100")] {
        let (file, text) = io_weight_file(cg);
        assert!(text.contains(w), "{}: {text}", file.display());
    }
    let reader = |skip_blocks: u64| {
        Gated::spawn(&format!(
            "while :; do {BUSYBOX} dd if={} of=/dev/null bs=256k skip={skip_blocks} count={} iflag=direct status=none || exit 1; done",
            dev.path,
            region / (256 << 10)
        ))
    };
    let mut a = reader(0);
    let mut b = reader(region / (256 << 10));
    a.join(&heavy);
    b.join(&light);
    a.release();
    b.release();
    std::thread::sleep(Duration::from_millis(300));
    let read = |cg: &ContainerCgroup| cg.stats().unwrap().io_read_bytes;
    let (h0, l0) = (read(&heavy), read(&light));
    // Long enough that BFQ's split averages out.
    std::thread::sleep(Duration::from_secs(6));
    let (h1, l1) = (read(&heavy), read(&light));
    // A reader that died (dd failed) explains a zero below better than the weights would.
    let died: Vec<String> = [("heavy", &mut a), ("light", &mut b)]
        .into_iter()
        .filter_map(|(name, r)| match r.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the {name} reader exited early ({status}): {}",
                r.stderr()
            )),
            _ => None,
        })
        .collect();
    for cg in [&heavy, &light] {
        cg.kill_all().unwrap();
    }
    let _ = (a.child.wait(), b.child.wait());
    assert!(died.is_empty(), "{}", died.join("; "));
    let (h, l) = (h1 - h0, l1 - l0);
    eprintln!(
        "BFQ, weights 1000 vs 100: {} MiB vs {} MiB read (ratio {:.2})",
        h >> 20,
        l >> 20,
        h as f64 / l.max(1) as f64
    );
    assert!(l > 0, "the light reader read nothing: {}", b.stderr());
    // BFQ gives 5-12x here; 2x is the margin against a shared machine's noise.
    assert!(
        h > 2 * l,
        "weight 1000 read {h} bytes, weight 100 read {l}: no clear preference"
    );
    for cg in [heavy, light] {
        cg.remove().unwrap();
    }
    drop(dev);
    parent.finish();
}
