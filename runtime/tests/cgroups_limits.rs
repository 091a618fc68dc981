//! Each limit enforced on real processes (as root, on the host's real cgroups).

mod cgroups_support;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use cgroups_support::{BUSYBOX, Gated, LoopDev, TestParent};
use strata_runtime::cgroups::{ContainerCgroup, Resources};

/// The measuring tests (CPU shares and quota, IO throttle and weight) run one at a time: they
/// would compete with each other for the CPUs and (the loop devices) for the kernel's loop workers.
static CPU_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A busy loop.
const SPIN: &str = "while :; do :; done";

fn pids_events_max(cg: &ContainerCgroup) -> u64 {
    // pids.events "max N" counts forks refused by the limit (v1 and v2 alike).
    cg.path_for_exec()
        .iter()
        .map(|procs| procs.with_file_name("pids.events"))
        .find(|p| p.exists())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("max ").map(|n| n.trim().parse().unwrap()))
        })
        .expect("pids.events of the container cgroup")
}

#[test]
fn memory_hog_is_oom_killed() {
    let parent = TestParent::new();
    let limit = 64 << 20;
    let res = Resources {
        memory: Some(limit),
        memory_swap: Some(limit as i64),
        ..Default::default()
    };
    let cg = ContainerCgroup::create(&parent.name, "hog", &res).unwrap();
    // dd with a 256 MiB block: reading /dev/zero into the buffer touches every page of it.
    let mut hog = Gated::spawn(&format!(
        "exec {BUSYBOX} dd if=/dev/zero of=/dev/null bs=256M count=1"
    ));
    hog.join(&cg);
    assert!(!cg.oom_killed(), "no OOM before the hog runs");
    hog.release();
    let status = hog.child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the hog must die by SIGKILL, got {status:?}"
    );
    assert!(cg.oom_killed(), "the cgroup must report the OOM kill");
    let stats = cg.stats().unwrap();
    assert!(stats.oom_kills >= 1);
    assert_eq!(stats.memory_limit_bytes, Some(limit));
    let peak = stats.memory_peak_bytes.expect("peak");
    assert!(
        peak >= limit / 2 && peak <= limit + (1 << 20),
        "peak {peak} vs limit {limit}"
    );
    cg.kill_all().unwrap();
    cg.remove().unwrap();
    parent.finish();
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let parent = TestParent::new();
    let limit = 16;
    let res = Resources {
        pids: Some(limit),
        ..Default::default()
    };
    let cg = ContainerCgroup::create(&parent.name, "bomb", &res).unwrap();
    // Forks far more sleepers than allowed; ash gives up at the first refused fork.
    let mut bomb = Gated::spawn(&format!(
        "i=0; while [ $i -lt 200 ]; do {BUSYBOX} sleep 60 & i=$((i+1)); done; wait"
    ));
    bomb.join(&cg);
    bomb.release();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut max_seen = 0;
    while pids_events_max(&cg) == 0 {
        let n = cg.stats().unwrap().pids_current;
        max_seen = max_seen.max(n);
        assert!(
            Instant::now() < deadline,
            "the bomb never hit the limit (at {n} pids)"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = cg.stats().unwrap();
    max_seen = max_seen.max(stats.pids_current);
    assert_eq!(stats.pids_limit, Some(limit as u64));
    assert!(
        max_seen <= limit as u64,
        "saw {max_seen} pids under a limit of {limit}"
    );
    // ash reports the refused fork and gives up: let it finish writing before anything is killed
    // (killing it right at the limit raced with its message). Bounded; the stderr check judges.
    let deadline = Instant::now() + Duration::from_secs(20);
    while bomb.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The sleepers hold the stderr pipe open: kill them before reading it.
    cg.kill_all().unwrap();
    assert!(cg.procs().is_empty());
    let _ = bomb.child.wait();
    let err = bomb.stderr();
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "stderr: {err}"
    );
    cg.remove().unwrap();
    parent.finish();
}

#[test]
fn busy_loop_under_half_a_cpu_gets_half_a_cpu() {
    let parent = TestParent::new();
    let res = Resources {
        cpus: Some(0.5),
        ..Default::default()
    };
    let cg = ContainerCgroup::create(&parent.name, "spin", &res).unwrap();
    let _serial = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    // A heavy parent weight lets the spinner win its CPU against the shared machine's other load,
    // so what caps it is the quota under test, not the neighbours.
    parent.boost_cpu_weight();
    let mut spin = Gated::spawn(SPIN);
    spin.join(&cg);
    spin.release();
    // Skip the first periods, then measure the cgroup's own CPU time over ~3 s of wall time.
    std::thread::sleep(Duration::from_millis(300));
    let (c0, t0) = (cg.stats().unwrap().cpu_usage_ns, Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (c1, t1) = (cg.stats().unwrap().cpu_usage_ns, Instant::now());
    let share = (c1 - c0) as f64 / (t1 - t0).as_nanos() as f64;
    eprintln!("busy loop under --cpus 0.5: {:.1}% of a CPU", share * 100.0);
    assert!(
        (0.40..=0.60).contains(&share),
        "busy loop got {:.1}% of a CPU",
        share * 100.0
    );
    cg.kill_all().unwrap();
    cg.remove().unwrap();
    parent.finish();
}

#[test]
fn device_write_bps_caps_direct_writes() {
    let parent = TestParent::new();
    let total: u64 = 16 << 20;
    let _serial = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let dev = LoopDev::new(total);
    let rate: u64 = 4 << 20;
    // The device is given by path; strata resolves it to MAJ:MIN.
    let res = Resources {
        device_write_bps: vec![(dev.path.clone(), rate)],
        ..Default::default()
    };
    let cg = ContainerCgroup::create(&parent.name, "dd", &res).unwrap();
    let mut dd = Gated::spawn(&format!(
        "exec {BUSYBOX} dd if=/dev/zero of={} bs=256k count={} oflag=direct",
        dev.path,
        total / (256 << 10)
    ));
    dd.join(&cg);
    let start = Instant::now();
    dd.release();
    let status = dd.child.wait().unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "dd failed: {status:?} {}", dd.stderr());
    let throughput = total as f64 / elapsed.as_secs_f64();
    let ratio = throughput / rate as f64;
    eprintln!(
        "dd under a {} MiB/s throttle: {:.2} MiB/s",
        rate >> 20,
        throughput / (1 << 20) as f64
    );
    assert!(
        (0.75..=1.25).contains(&ratio),
        "dd wrote {:.2} MiB/s under a {} MiB/s throttle on {}",
        throughput / (1 << 20) as f64,
        rate >> 20,
        dev.path
    );
    let stats = cg.stats().unwrap();
    assert!(
        stats.io_write_bytes >= total,
        "io stats counted {} bytes",
        stats.io_write_bytes
    );
    cg.remove().unwrap();
    parent.finish();
}

#[test]
fn cpuset_pins_the_process() {
    let parent = TestParent::new();
    let res = Resources {
        cpuset: Some("0".into()),
        cpu_shares: Some(512),
        ..Default::default()
    };
    let cg = ContainerCgroup::create(&parent.name, "pin", &res).unwrap();
    let mut p = Gated::spawn(&format!("exec {BUSYBOX} cat /proc/self/status >&2"));
    p.join(&cg);
    p.release();
    let _ = p.child.wait();
    let status = p.stderr();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status")
        .trim()
        .to_string();
    assert_eq!(allowed, "0");
    cg.remove().unwrap();
    parent.finish();
}

#[test]
fn cpu_shares_split_a_contended_cpu() {
    let parent = TestParent::new();
    // Both spinners on CPU 0, so they compete; 1024 vs 512 shares should split it 2:1.
    let mk = |name: &str, shares| {
        let res = Resources {
            cpuset: Some("0".into()),
            cpu_shares: Some(shares),
            ..Default::default()
        };
        ContainerCgroup::create(&parent.name, name, &res).unwrap()
    };
    let (high, low) = (mk("high", 1024), mk("low", 512));
    let _serial = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut a = Gated::spawn(SPIN);
    let mut b = Gated::spawn(SPIN);
    a.join(&high);
    b.join(&low);
    a.release();
    b.release();
    std::thread::sleep(Duration::from_millis(300));
    let (h0, l0) = (
        high.stats().unwrap().cpu_usage_ns,
        low.stats().unwrap().cpu_usage_ns,
    );
    std::thread::sleep(Duration::from_secs(2));
    let (h1, l1) = (
        high.stats().unwrap().cpu_usage_ns,
        low.stats().unwrap().cpu_usage_ns,
    );
    let ratio = (h1 - h0) as f64 / (l1 - l0).max(1) as f64;
    eprintln!("cpu shares 1024:512 on one CPU: ratio {ratio:.2}");
    assert!(
        (1.5..=2.7).contains(&ratio),
        "shares 1024 vs 512 gave a CPU ratio of {ratio:.2}"
    );
    for cg in [high, low] {
        cg.kill_all().unwrap();
        cg.remove().unwrap();
    }
    parent.finish();
}
