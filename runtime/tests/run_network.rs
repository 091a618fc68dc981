//! `--net bridge` end to end: a veth pair with an address on each end, reachable both ways, gone after rm.

mod common;
use common::Env;
use std::net::Ipv4Addr;

#[test]
fn bridge_network_connects_the_container_and_is_torn_down() {
    let env = Env::new();
    let name = common::unique("br");
    let d = env.run(
        &["-d", "--net", "bridge", "--name", &name],
        &[
            "/bin/sh",
            "-c",
            "while :; do echo hello-from-container | nc -l -p 7777; done",
        ],
    );
    assert!(d.status.success(), "{}", common::stderr(&d));
    common::wait_running(&env, &name);
    let out = env.exec_sh(
        &name,
        "ip -o -4 addr show eth0; ip route | grep default; ls /sys/class/net",
    );
    let text = common::stdout(&out);
    let cidr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no address: {text}"));
    let ip: Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
    assert!(cidr.ends_with("/30"), "{cidr}");
    let gw: Ipv4Addr = text
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(u32::from(ip), u32::from(gw) + 1);
    assert!(
        text.contains("eth0\nlo") || text.contains("lo\neth0"),
        "{text}"
    );

    // The host end exists and the container answers on TCP and ping.
    let index = (u32::from(gw) - u32::from(strata_runtime::network::SUBNET_BASE)) / 4;
    let host_if = strata_runtime::network::host_if_name(index, &name);
    assert!(
        std::path::Path::new("/sys/class/net")
            .join(&host_if)
            .exists(),
        "host veth {host_if} missing"
    );
    let mut got = String::new();
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect((ip, 7777)) {
            use std::io::Read;
            let _ = s.read_to_string(&mut got);
            if !got.is_empty() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(got.trim(), "hello-from-container");
    let ping = env
        .strata()
        .args([
            "exec",
            &name,
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "5",
            &gw.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping to the host end failed: {}",
        common::stdout(&ping)
    );

    assert!(
        env.strata()
            .args(["rm", "-f", &name])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&host_if)
            .exists(),
        "host veth {host_if} left behind"
    );
    env.assert_nothing_left();
}
