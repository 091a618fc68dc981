//! Which CPUs the server's threads may run on, changeable while they serve. fuser owns the threads and
//! their ids are not known here, so each thread applies a change itself, at its next request.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sched::CpuSet;
use nix::unistd::Pid;

/// The CPU mask the server's threads should have, and a generation that counts its changes.
#[derive(Debug, Default)]
pub struct Placement {
    generation: AtomicU64,
    cpus: parking_lot::Mutex<Option<CpuSet>>,
}

thread_local! {
    /// The generation this thread last applied (0: none).
    static APPLIED: Cell<u64> = const { Cell::new(0) };
}

impl Placement {
    /// Asks every thread to move to `cpus` at its next request.
    pub fn set(&self, cpus: CpuSet) {
        *self.cpus.lock() = Some(cpus);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Called by a server thread at each request: applies a change it has not applied yet. Costs an
    /// atomic load when nothing changed.
    pub fn apply(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == 0 || APPLIED.get() == generation {
            return;
        }
        APPLIED.set(generation);
        if let Some(cpus) = *self.cpus.lock() {
            // A hint: where the kernel refuses it the thread stays where it is and still serves.
            let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &cpus);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Placement;
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;

    #[test]
    fn a_thread_takes_the_mask_at_its_next_request_once() {
        let me = Pid::from_raw(0);
        let allowed = sched_getaffinity(me).unwrap();
        let first = (0..CpuSet::count())
            .find(|&c| allowed.is_set(c).unwrap())
            .unwrap();
        let mut one = CpuSet::new();
        one.set(first).unwrap();
        let p = Placement::default();
        std::thread::spawn(move || {
            p.apply();
            assert_eq!(sched_getaffinity(me).unwrap(), allowed, "nothing set yet");
            p.set(one);
            p.apply();
            assert_eq!(sched_getaffinity(me).unwrap(), one);
            // Applied once per change: a mask the thread set itself afterwards is left alone.
            nix::sched::sched_setaffinity(me, &allowed).unwrap();
            p.apply();
            assert_eq!(sched_getaffinity(me).unwrap(), allowed);
            p.set(one);
            p.apply();
            assert_eq!(sched_getaffinity(me).unwrap(), one);
        })
        .join()
        .unwrap();
    }
}
