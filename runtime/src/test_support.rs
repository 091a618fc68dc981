//! Helpers of the unit tests.

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// Runs `f` on a thread of its own in a private copy of this process's mount namespace (what it
/// mounts there vanishes with the thread).
pub fn in_private_mount_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (it mounts in a private mount namespace)"
    );
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNS).unwrap();
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Runs `body`, a unit test named `test` (as `module_path!()` and the function's name give it), alone in
/// a fresh process of this test binary, for a test that forks or that counts its process's children or
/// open fds: a fork beside the harness's other test threads can copy a lock one of them holds (the
/// musl builds' allocator lock, say), and the child then waits for it forever; other tests' children
/// and fds would be counted too. There the test is the one thread at work. Here the child must pass, having
/// run exactly that test.
pub fn in_own_process(module: &str, test: &str, body: impl FnOnce()) {
    const ALONE: &str = "STRATA_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        body();
        return;
    }
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let name = format!("{module}::{test}");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name}, run alone: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
