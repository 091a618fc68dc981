//! Bridge networking between the host and a process in its own network namespace: addresses,
//! route, ping and TCP over the veth, the tc rate limit in both directions, teardown.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use strata_runtime::network::{Bridge, LEASE_DIR, interface_is_up};

const BUSYBOX: &str = "/bin/busybox";
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn require() {
    assert!(nix::unistd::geteuid().is_root(), "bridge tests need root");
    assert!(
        Path::new(BUSYBOX).exists(),
        "bridge tests need busybox-static at {BUSYBOX}"
    );
    assert!(
        Path::new("/usr/bin/unshare").exists(),
        "bridge tests need unshare (util-linux)"
    );
}

fn unique_id() -> String {
    format!(
        "strata-test-res-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A process holding a fresh network namespace ("the container"); killed when dropped.
struct Holder(Child);

impl Holder {
    fn spawn() -> Holder {
        let child = Command::new("/usr/bin/unshare")
            .args(["--net", "--", BUSYBOX, "sleep", "120"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let pid = child.id();
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        // unshare(2) happens after fork: wait until the child's namespace is not ours.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .is_none_or(|ns| ns == own)
        {
            assert!(
                Instant::now() < deadline,
                "the holder never entered its namespace"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Holder(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn netns(&self) -> OwnedFd {
        std::fs::File::open(format!("/proc/{}/ns/net", self.pid()))
            .unwrap()
            .into()
    }

    /// Runs `f` on a thread inside the holder's network namespace.
    fn inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let ns = self.netns();
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("setns into the container's netns");
            f()
        })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Tears the bridge down even when an assertion fails.
struct Guard(Option<Bridge>);

impl Guard {
    fn take(mut self) -> Bridge {
        self.0.take().unwrap()
    }
}

impl std::ops::Deref for Guard {
    type Target = Bridge;
    fn deref(&self) -> &Bridge {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            let _ = b.teardown();
        }
    }
}

fn host_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn leases_of(id: &str) -> usize {
    std::fs::read_dir(LEASE_DIR)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path()).is_ok_and(|t| t.lines().next() == Some(id))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn veth_carries_ping_and_tcp_and_teardown_leaves_nothing() {
    require();
    let holder = Holder::spawn();
    let id = unique_id();
    let bridge = Guard(Some(Bridge::setup(&id, holder.pid(), None).unwrap()));
    assert!(
        bridge.host_if.len() <= 15 && bridge.host_if.starts_with("stv"),
        "{}",
        bridge.host_if
    );
    assert!(host_link_exists(&bridge.host_if));
    assert_eq!(leases_of(&id), 1);
    let (host_ip, cip) = (bridge.host_ip, bridge.container_ip);
    assert_eq!(u32::from(cip), u32::from(host_ip) + 1);

    // Inside: lo and eth0 up, eth0 has the address, a default route via the host end.
    let inside = holder
        .inside(move || {
            let devs: Vec<String> = common::net_devices();
            let route = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
            (
                devs,
                interface_is_up("lo").unwrap(),
                interface_is_up("eth0").unwrap(),
                route,
            )
        })
        .join()
        .unwrap();
    let (mut devs, lo_up, eth0_up, route) = inside;
    devs.sort();
    assert_eq!(devs, vec!["eth0".to_string(), "lo".to_string()]);
    assert!(lo_up && eth0_up);
    // /proc/net/route: destination 00000000 with the gateway in little-endian hex.
    let gw = format!("{:08X}", u32::from(host_ip).swap_bytes());
    assert!(
        route
            .lines()
            .any(|l| l.starts_with("eth0\t00000000\t") && l.contains(&gw)),
        "no default route via {host_ip}:\n{route}"
    );

    // ping from the host to the container end.
    let ping = Command::new(BUSYBOX)
        .args(["ping", "-c", "1", "-W", "5", &cip.to_string()])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping {cip}: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // TCP: an echo server in the container, a client on the host.
    let listener = holder
        .inside(move || TcpListener::bind(SocketAddr::from((cip, 0))).unwrap())
        .join()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        peer
    });
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    assert_eq!(
        server.join().unwrap().ip(),
        host_ip,
        "the container sees the host end's address"
    );

    let bridge = bridge.take();
    let host_if = bridge.host_if.clone();
    bridge.teardown().unwrap();
    assert!(!host_link_exists(&host_if), "{host_if} left behind");
    assert_eq!(leases_of(&id), 0, "lease left behind");
}

#[test]
fn concurrent_bridges_get_distinct_subnets_and_names() {
    require();
    let holders: Vec<Holder> = (0..3).map(|_| Holder::spawn()).collect();
    // The same id three times: the leases still differ (they are taken with O_EXCL).
    let id = unique_id();
    let bridges: Vec<Guard> = std::thread::scope(|s| {
        let hs: Vec<_> = holders
            .iter()
            .map(|h| {
                let id = id.clone();
                let pid = h.pid();
                s.spawn(move || Guard(Some(Bridge::setup(&id, pid, None).unwrap())))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<_> = bridges.iter().map(|b| b.host_ip).collect();
    let mut names: Vec<_> = bridges.iter().map(|b| b.host_if.clone()).collect();
    ips.sort();
    ips.dedup();
    names.sort();
    names.dedup();
    assert_eq!((ips.len(), names.len()), (3, 3));
    let names: Vec<String> = bridges
        .into_iter()
        .map(|b| b.take())
        .map(|b| {
            let n = b.host_if.clone();
            b.teardown().unwrap();
            n
        })
        .collect();
    for n in names {
        assert!(!host_link_exists(&n));
    }
    assert_eq!(leases_of(&id), 0);
}

#[test]
fn dead_process_fails_cleanly() {
    require();
    let id = unique_id();
    let mut c = Command::new(BUSYBOX).arg("true").spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap();
    let e = Bridge::setup(&id, pid, None).unwrap_err().to_string();
    assert!(e.contains(&pid.to_string()), "{e}");
    assert_eq!(leases_of(&id), 0);
    // gc of an id with no bridge is a no-op.
    Bridge::teardown_by_id(&id).unwrap();
}

#[test]
fn a_process_in_the_host_namespace_is_refused() {
    require();
    let id = unique_id();
    let mut c = Command::new(BUSYBOX).args(["sleep", "30"]).spawn().unwrap();
    let e = Bridge::setup(&id, c.id() as i32, None)
        .unwrap_err()
        .to_string();
    let _ = c.kill();
    let _ = c.wait();
    assert!(e.contains("own network namespace"), "{e}");
    assert_eq!(leases_of(&id), 0);
}

#[test]
fn teardown_by_id_removes_a_forgotten_bridge() {
    require();
    let holder = Holder::spawn();
    let id = unique_id();
    let b = Bridge::setup(&id, holder.pid(), None).unwrap();
    let host_if = b.host_if.clone();
    std::mem::forget(b); // as if strata had been killed
    assert!(host_link_exists(&host_if));
    Bridge::teardown_by_id(&id).unwrap();
    assert!(!host_link_exists(&host_if));
    assert_eq!(leases_of(&id), 0);
}

/// Sends `total` bytes from `send` to `recv` and returns the receiver's rate in bytes/s, measured
/// from its first byte to EOF.
fn measure(
    listener: TcpListener,
    connect: impl FnOnce(SocketAddr) -> TcpStream + Send + 'static,
    total: usize,
) -> f64 {
    let addr = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        let mut s = connect(addr);
        let chunk = vec![0x5au8; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let (mut s, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).unwrap();
    let start = Instant::now();
    let mut got = 0usize;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    let elapsed = start.elapsed();
    sender.join().unwrap();
    assert_eq!(got + n, total);
    got as f64 / elapsed.as_secs_f64()
}

#[test]
fn net_rate_limits_both_directions() {
    require();
    let holder = Holder::spawn();
    let id = unique_id();
    let rate: u64 = 2_000_000; // bytes/s
    let bridge = Guard(Some(Bridge::setup(&id, holder.pid(), Some(rate)).unwrap()));
    let (host_ip, cip) = (bridge.host_ip, bridge.container_ip);
    let total = (rate * 3) as usize; // ~3 s per direction

    // Host → container: shaped on the host end's egress.
    let listener = holder
        .inside(move || TcpListener::bind(SocketAddr::from((cip, 0))).unwrap())
        .join()
        .unwrap();
    let down = measure(
        listener,
        |a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).unwrap(),
        total,
    );

    // Container → host: shaped on eth0's egress inside the namespace.
    let listener = TcpListener::bind(SocketAddr::from((host_ip, 0))).unwrap();
    let ns = holder.netns();
    let up = measure(
        listener,
        move |a| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            TcpStream::connect_timeout(&a, Duration::from_secs(5)).unwrap()
        },
        total,
    );
    eprintln!(
        "--net-rate {:.1} MB/s: into the container {:.2} MB/s, out of it {:.2} MB/s",
        rate as f64 / 1e6,
        down / 1e6,
        up / 1e6
    );
    for (what, r) in [("into the container", down), ("out of the container", up)] {
        let ratio = r / rate as f64;
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{what}: {:.2} MB/s under a {:.1} MB/s limit",
            r / 1e6,
            rate as f64 / 1e6
        );
    }
    let host_if = bridge.host_if.clone();
    bridge.take().teardown().unwrap();
    assert!(!host_link_exists(&host_if));
}
