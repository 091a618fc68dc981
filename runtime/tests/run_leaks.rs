//! 200 sequential run/rm cycles leak nothing: host mounts, state dirs, fds of this long-lived parent,
//! child processes.

mod common;
use common::Env;

fn children_of_me() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                == Some(me.as_str())
        })
        .count()
}

#[test]
fn two_hundred_run_rm_cycles_leak_nothing() {
    let env = Env::new();
    // Warm up once so lazily created things (the state root) exist before the baseline.
    let out = env.run(&["--rm"], &["/bin/true"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let (fds, kids) = (common::open_fds(), children_of_me());
    let prefix = common::unique("cycle");
    for i in 0..200 {
        let name = format!("{prefix}-{i}");
        let fs = ["bind", "kernel", "fuse"][i % 3];
        let out = env.run(
            &["--fs", fs, "--name", &name],
            &["/bin/sh", "-c", "echo x > /tmp/f"],
        );
        assert!(out.status.success(), "cycle {i}: {}", common::stderr(&out));
        let rm = env.strata().args(["rm", &name]).output().unwrap();
        assert!(rm.status.success(), "cycle {i}: {}", common::stderr(&rm));
    }
    // Mounts are made in each container's own namespace; none may show up in the host's table.
    assert_eq!(
        common::host_mounts_mentioning(&prefix),
        0,
        "host mounts leaked"
    );
    assert_eq!(
        common::host_mounts_mentioning(&env.tmp.path().to_string_lossy()),
        0,
        "host mounts leaked"
    );
    assert_eq!(common::open_fds(), fds, "fds leaked");
    assert_eq!(children_of_me(), kids, "processes left behind");
    env.assert_nothing_left();
}
