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
