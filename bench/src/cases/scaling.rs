//! Scaling: N concurrent starts per subject, open-loop (fixed arrival schedule, latency from the
//! *scheduled* start, achieved throughput reported) and closed-loop (N workers starting back to back);
//! and startup against extra mounts (0, 100, 1000, in a private mount namespace the subjects start from)
//! and against live network namespaces held by sleeping processes.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;

use super::namespaces::NET_QUIESCE;
use super::startup::StartupCase;
use super::{Case, CaseError, CaseResult, Family, Group, Sample, Suite, unique_name};
use crate::subjects::{self, StartEnv, Starter, Subject};
use crate::sys::{HolderSetup, NsHolder};

const SUBJECTS: [Subject; 5] = [
    Subject::Floor,
    Subject::StrataKernel,
    Subject::Crun,
    Subject::Runc,
    Subject::DockerRunc,
];
/// Docker's concurrent starts take seconds each on a small machine; beyond this N they exceed the suite's
/// time budget and are reported as skipped.
fn docker_max_n(suite: Suite) -> usize {
    if suite == Suite::Quick { 1 } else { 16 }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Closed,
}

struct Concurrent {
    subject: Subject,
    n: usize,
    mode: Mode,
    docker_max_n: usize,
    starter: Option<Arc<dyn Starter>>,
    /// Open loop: time between scheduled arrivals.
    interval: Duration,
}

/// Median of three unloaded starts, to set the open-loop arrival rate.
fn unloaded_latency(s: &dyn Starter) -> CaseResult<Duration> {
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(s.start()?.value);
    }
    v.sort();
    Ok(v[1])
}

impl Case for Concurrent {
    fn subject(&self) -> String {
        self.subject.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        if self.subject == Subject::DockerRunc && self.n > self.docker_max_n {
            return Err(CaseError::Skipped(format!(
                "more than {} concurrent docker starts exceed this suite's time budget on this machine",
                self.docker_max_n
            )));
        }
        let s = self.subject.prepare(&StartEnv::default())?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u32;
        // Offer twice what one start per core could sustain unloaded: the interesting, loaded regime.
        self.interval = unloaded_latency(s.as_ref())? / (2 * cores);
        self.starter = Some(s);
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        let starter = self
            .starter
            .clone()
            .ok_or_else(|| CaseError::failed("not prepared"))?;
        let n = self.n;
        let per_worker = if self.mode == Mode::Closed { 2 } else { 1 };
        let barrier = Arc::new(Barrier::new(n + 1));
        let t0 = Arc::new(Mutex::new(None::<Instant>));
        let interval = self.interval;
        let mode = self.mode;
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (starter, barrier, t0) = (starter.clone(), barrier.clone(), t0.clone());
                std::thread::spawn(move || -> CaseResult<(Vec<Duration>, Instant)> {
                    barrier.wait();
                    let start = t0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .expect("t0 set before the barrier");
                    let mut lat = Vec::new();
                    let mut done = start;
                    for _ in 0..per_worker {
                        let scheduled = match mode {
                            Mode::Open => start + interval * i as u32,
                            Mode::Closed => Instant::now(),
                        };
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        starter.start()?;
                        done = Instant::now();
                        lat.push(done - scheduled);
                    }
                    Ok((lat, done))
                })
            })
            .collect();
        // Threads exist before the clock starts; t0 leaves them 1 ms to pass the barrier.
        *t0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + Duration::from_millis(1));
        let start = t0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expect("just set");
        barrier.wait();
        let mut lat = Vec::new();
        let mut last = start;
        let mut err = None;
        for h in handles {
            match h
                .join()
                .map_err(|_| CaseError::failed("start thread panicked"))?
            {
                Ok((l, d)) => {
                    lat.extend(l);
                    last = last.max(d);
                }
                Err(e) => err = Some(e),
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
        let max = lat.iter().max().copied().unwrap_or_default();
        let makespan = (last - start).as_secs_f64();
        let mut metrics = vec![
            ("throughput_per_s".to_string(), lat.len() as f64 / makespan),
            ("max_latency_ms".to_string(), max.as_secs_f64() * 1e3),
        ];
        if self.mode == Mode::Open {
            metrics.push(("offered_per_s".into(), 1.0 / self.interval.as_secs_f64()));
        }
        Ok(Sample {
            value: mean,
            parts: Vec::new(),
            metrics,
        })
    }
    fn teardown(&mut self) {
        self.starter = None;
    }
    fn quiesce(&self) -> Duration {
        // n net namespaces to clean up.
        NET_QUIESCE * (self.n as u32).min(8)
    }
}

/// A fixture shared by the cases of one group, made by the first prepare and dropped by the last teardown.
struct Shared<T> {
    make: Box<dyn Fn() -> CaseResult<T> + Send + Sync>,
    state: Mutex<(usize, Option<Arc<T>>)>,
}

impl<T> Shared<T> {
    fn new(make: impl Fn() -> CaseResult<T> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Shared {
            make: Box::new(make),
            state: Mutex::new((0, None)),
        })
    }
    fn acquire(&self) -> CaseResult<Arc<T>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.1.is_none() {
            st.1 = Some(Arc::new((self.make)()?));
        }
        st.0 += 1;
        Ok(st.1.clone().expect("just made"))
    }
    fn release(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = st.0.saturating_sub(1);
        if st.0 == 0 {
            st.1 = None;
        }
    }
}

/// A private mount namespace (as for crun) with `n` extra tmpfs mounts.
struct MountNs {
    _holder: NsHolder,
    fd: Arc<OwnedFd>,
    dir: PathBuf,
}

impl Drop for MountNs {
    fn drop(&mut self) {
        // The mounts exist only in the holder's namespace; they vanish with it.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mount_ns(n: usize) -> CaseResult<MountNs> {
    let dir = std::env::temp_dir().join(unique_name("mounts"));
    let points: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("m{i}"))).collect();
    for p in &points {
        std::fs::create_dir_all(p)?;
    }
    let holder = subjects::crun_mount_ns(&points)?;
    let fd = Arc::new(holder.ns_fd("mnt").map_err(CaseError::failed)?);
    Ok(MountNs {
        _holder: holder,
        fd,
        dir,
    })
}

struct WithFixture<T: Send + Sync + 'static> {
    fixture: Arc<Shared<T>>,
    env_of: fn(&T) -> StartEnv,
    inner: Option<StartupCase>,
    subject: Subject,
    held: bool,
}

impl<T: Send + Sync + 'static> Case for WithFixture<T> {
    fn subject(&self) -> String {
        self.subject.name().into()
    }
    fn prepare(&mut self) -> CaseResult<()> {
        let f = self.fixture.acquire()?;
        self.held = true;
        let mut c = StartupCase::new(self.subject, (self.env_of)(&f));
        c.prepare()?;
        self.inner = Some(c);
        Ok(())
    }
    fn run_once(&mut self) -> CaseResult<Sample> {
        self.inner
            .as_mut()
            .ok_or_else(|| CaseError::failed("not prepared"))?
            .run_once()
    }
    fn teardown(&mut self) {
        if let Some(mut c) = self.inner.take() {
            c.teardown();
        }
        if std::mem::take(&mut self.held) {
            self.fixture.release();
        }
    }
    fn quiesce(&self) -> Duration {
        NET_QUIESCE
    }
}

fn netns_holders(n: usize) -> CaseResult<Vec<NsHolder>> {
    (0..n)
        .map(|_| {
            NsHolder::spawn(CloneFlags::CLONE_NEWNET, &HolderSetup::default())
                .map_err(CaseError::failed)
        })
        .collect()
}

pub fn groups(suite: Suite) -> Vec<Group> {
    let (ns, cap, counts): (&[usize], usize, &[usize]) = match suite {
        Suite::Quick => (&[1, 4], 2, &[0, 1000]),
        Suite::Standard => (&[1, 2, 4, 16, 64], 10, &[0, 100, 1000]),
        Suite::Full => (&[1, 2, 4, 16, 64], 40, &[0, 100, 1000]),
    };
    let mut out = Vec::new();
    for (mode, label, method) in [
        (
            Mode::Open,
            "open-loop",
            "N starts on a fixed arrival schedule (one every u/(2·cores), u = the subject's median unloaded \
             start measured in prepare); value = mean latency from each start's *scheduled* time to its end; \
             metrics: achieved throughput (starts / makespan), offered rate, max latency.",
        ),
        (
            Mode::Closed,
            "closed-loop",
            "N workers, each starting twice back to back; value = mean latency per start; metric: achieved \
             throughput (starts / makespan).",
        ),
    ] {
        for &n in ns {
            let mut g = Group::new(Family::Scaling, format!("{label}/n={n}"), method)
                .reference("floor")
                .max_samples(if n >= 16 { cap.min(6) } else { cap });
            for s in SUBJECTS {
                g = g.case(Concurrent {
                    subject: s,
                    n,
                    mode,
                    docker_max_n: docker_max_n(suite),
                    starter: None,
                    interval: Duration::ZERO,
                });
            }
            out.push(g);
        }
    }
    for &n in counts {
        let fixture = Shared::new(move || mount_ns(n));
        let mut g = Group::new(
            Family::Scaling,
            format!("mounts/extra={n}"),
            format!(
                "Startup (as startup/true) from a private mount namespace holding {n} extra tmpfs mounts (and \
                 /sys/fs/cgroup/unified unmounted on hybrid hosts); every subject joins it with setns before it \
                 starts (docker cannot: dockerd starts containers from its own namespace)."
            ),
        )
        .reference("floor")
        .max_samples(cap.max(3));
        for s in SUBJECTS {
            g = g.case(WithFixture {
                fixture: fixture.clone(),
                env_of: |m: &MountNs| StartEnv {
                    mnt_ns: Some(m.fd.clone()),
                },
                inner: None,
                subject: s,
                held: false,
            });
        }
        out.push(g);
    }
    for &n in counts {
        let fixture = Shared::new(move || netns_holders(n));
        let mut g = Group::new(
            Family::Scaling,
            format!("netns/live={n}"),
            format!("Startup (as startup/true) while {n} extra network namespaces are held by sleeping processes."),
        )
        .reference("floor")
        .max_samples(cap.max(3));
        for s in SUBJECTS {
            g = g.case(WithFixture {
                fixture: fixture.clone(),
                env_of: |_: &Vec<NsHolder>| StartEnv::default(),
                inner: None,
                subject: s,
                held: false,
            });
        }
        out.push(g);
    }
    out
}
