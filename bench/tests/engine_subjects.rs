//! The Docker and podman subjects really start containers: each is prepared (its runtime registered with
//! the daemon / its private podman root made and the image loaded) and starts /bin/true twice; the podman
//! rootfs cases run on the mount program they name. Docker (with the runtimes scripts/docker-up registers),
//! podman, conmon, runc, crun and fuse-overlayfs are prerequisites on CI: a subject that is skipped here
//! fails the test with its reason. Runs as one test, because the bench's shared dirs are removed at the end.

use strata_bench::cases::rootfs::{Backend, PodmanMount, PodmanWorkload};
use strata_bench::cases::{Case, CaseError};
use strata_bench::subjects::{self, StartEnv, Subject};

const NEW_SUBJECTS: [Subject; 6] = [
    Subject::DockerRunc,
    Subject::DockerCrun,
    Subject::DockerStrata,
    Subject::PodmanRunc,
    Subject::PodmanCrun,
    Subject::PodmanStrata,
];

fn describe(e: &CaseError) -> String {
    match e {
        CaseError::Skipped(r) => format!("skipped (a prerequisite is missing): {r}"),
        CaseError::Failed(r) => format!("failed: {r}"),
    }
}

#[test]
fn docker_and_podman_subjects_start_containers() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (Docker, private podman storage with mounts)"
    );
    let mut problems = Vec::new();
    for s in NEW_SUBJECTS {
        match s.prepare(&StartEnv::default()) {
            Err(e) => problems.push(format!("{}: prepare {}", s.name(), describe(&e))),
            Ok(starter) => {
                for i in 0..2 {
                    match starter.start() {
                        Ok(sample) => assert!(
                            !sample.value.is_zero(),
                            "{}: start {i} returned a zero sample",
                            s.name()
                        ),
                        Err(e) => {
                            problems.push(format!("{}: start {i} {}", s.name(), describe(&e)))
                        }
                    }
                }
            }
        }
    }
    // Each mount program: prepare checks that the container's root has that fs type and runs the
    // workload once (the files workload checks its output); then one measured run.
    for b in [Backend::Kernel, Backend::Strata, Backend::FuseOverlayfs] {
        for w in [PodmanWorkload::True, PodmanWorkload::Files] {
            let mut case = PodmanMount::new(b, w);
            let what = format!("podman on {} ({})", b.name(), w.name());
            match case.prepare().and_then(|()| case.run_once()) {
                Ok(sample) => assert!(!sample.value.is_zero(), "{what}: zero sample"),
                Err(e) => problems.push(format!("{what}: {}", describe(&e))),
            }
            case.teardown();
        }
    }
    subjects::cleanup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
