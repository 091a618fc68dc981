//! loopback_up in a fresh network namespace (unshared by one thread of this test).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use std::os::unix::fs::MetadataExt;

use strata_runtime::network::{interface_is_up, loopback_up, new_netns_with_loopback};

#[test]
fn loopback_comes_up_in_a_fresh_netns() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it unshares a network namespace)"
    );
    // A network namespace is per thread: this thread's namespace dies with it.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        assert!(
            !interface_is_up("lo").unwrap(),
            "lo starts down in a new namespace"
        );
        // With lo down there is no route even to 127.0.0.1.
        let early = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(
            TcpStream::connect(early.local_addr().unwrap()).is_err(),
            "127.0.0.1 must not carry traffic before lo is up"
        );
        drop(early);

        loopback_up().unwrap();
        assert!(interface_is_up("lo").unwrap());
        // Only lo exists in the namespace.
        let devs: Vec<String> = common::net_devices();
        assert_eq!(devs, vec!["lo".to_string()]);
        // And it carries traffic.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        t.join().unwrap();
        // Idempotent.
        loopback_up().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn missing_interface_is_an_error_not_a_panic() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it unshares a network namespace)"
    );
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        assert!(interface_is_up("nonexistent0").is_err());
        assert!(interface_is_up("this-name-is-far-too-long").is_err());
    })
    .join()
    .unwrap();
}

#[test]
fn a_namespace_made_for_a_container_has_lo_up_and_its_maker_comes_back() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it makes a network namespace)"
    );
    std::thread::spawn(|| {
        let ns = || std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let home = ns();
        let made = new_netns_with_loopback().unwrap();
        assert_eq!(ns(), home, "the thread must be back in its own namespace");
        let made_ino = nix::sys::stat::fstat(&made).unwrap().st_ino;
        assert_ne!(made_ino, home, "a new namespace");
        // As the container process does: enter it and find only lo, up.
        nix::sched::setns(&made, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        assert_eq!(ns(), made_ino);
        assert!(interface_is_up("lo").unwrap());
        let devs: Vec<String> = common::net_devices();
        assert_eq!(devs, vec!["lo".to_string()]);
    })
    .join()
    .unwrap();
}
