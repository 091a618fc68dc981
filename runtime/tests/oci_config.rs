//! config.json handling of the OCI commands: hooks (order, and the state each receives on stdin), the
//! console socket (pty master over SCM_RIGHTS), and bad configs (a one-line error naming the field,
//! nothing left behind).

mod common;
mod oci_support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use common::{Env, unique};
use oci_support::*;
use serde_json::{Value, json};

/// A hook that appends its name to /tmp/order of the rootfs and saves its stdin as /tmp/NAME.json.
/// `host`: the path as seen from the runtime namespace (createRuntime, createContainer, poststart,
/// poststop) or, for startContainer, from inside the container.
fn hook(env: &Env, name: &str, in_container: bool) -> Value {
    let tmp = if in_container {
        "/tmp".to_string()
    } else {
        env.rootfs.join("tmp").display().to_string()
    };
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {tmp}/{name}.json; echo {name} >> {tmp}/order; test \"$HOOK_ENV\" = yes")],
        "env": ["HOOK_ENV=yes"],
        "timeout": 10
    })
}

#[test]
fn oci_hooks_run_in_order_with_the_state_on_stdin() {
    let env = Env::new();
    let id = unique("oci");
    let mut config = default_config(&env.rootfs, &["sleep", "1000"]);
    config["annotations"] = json!({"org.example.test": "hooks"});
    config["hooks"] = json!({
        "createRuntime": [hook(&env, "createRuntime", false)],
        "createContainer": [hook(&env, "createContainer", false)],
        "startContainer": [hook(&env, "startContainer", true)],
        "poststart": [hook(&env, "poststart", false)],
        "poststop": [hook(&env, "poststop", false)],
    });
    let bundle = write_bundle(&env, "hooks", &config);
    let (status, err) = create(&env, &id, &bundle, &[]);
    assert!(status.success(), "create: {err}");
    let order = env.rootfs.join("tmp/order");
    let read_order = || std::fs::read_to_string(&order).unwrap_or_default();
    assert_eq!(read_order(), "createRuntime\ncreateContainer\n");
    let pid = state(&env, &id)["pid"].as_i64().unwrap();
    let o = oci(&env, &["start", &id]);
    assert!(o.status.success(), "start: {}", common::stderr(&o));
    assert_eq!(read_order(), "createRuntime\ncreateContainer\nstartContainer\npoststart\n");
    let o = oci(&env, &["delete", "--force", &id]);
    assert!(o.status.success(), "delete: {}", common::stderr(&o));
    assert_eq!(
        read_order(),
        "createRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );
    for (name, status) in [
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let text = std::fs::read_to_string(env.rootfs.join(format!("tmp/{name}.json"))).unwrap();
        let s: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(s["id"], id.as_str(), "{name}: {s}");
        assert_eq!(s["status"], status, "{name}: {s}");
        assert_eq!(s["bundle"], bundle.to_str().unwrap(), "{name}: {s}");
        assert_eq!(s["annotations"]["org.example.test"], "hooks", "{name}: {s}");
        assert_eq!(s["ociVersion"], "1.2.0", "{name}: {s}");
        if status != "stopped" {
            assert_eq!(s["pid"], pid, "{name}: {s}");
        }
    }
    env.assert_nothing_left();
}

#[test]
fn oci_failing_create_hook_fails_create_and_leaves_nothing() {
    let env = Env::new();
    let id = unique("oci");
    let mut config = default_config(&env.rootfs, &["sleep", "1000"]);
    config["hooks"] = json!({"createRuntime": [{"path": "/bin/false", "args": ["false"]}]});
    let bundle = write_bundle(&env, "badhook", &config);
    let (status, err) = create(&env, &id, &bundle, &[]);
    assert!(!status.success());
    assert!(err.contains("createRuntime hook /bin/false"), "{err}");
    env.assert_nothing_left();
}

#[test]
fn oci_bad_configs_name_the_field_and_leave_nothing() {
    let env = Env::new();
    let good = default_config(&env.rootfs, &["true"]);
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    cases.push(("syntax", "{\"ociVersion\": \"1.0.2\", \"process\": {".into(), "syntax error"));
    let mut wrong_type = good.clone();
    wrong_type["process"]["user"]["uid"] = json!("zero");
    cases.push(("type", wrong_type.to_string(), "process.user.uid"));
    let mut missing_source = good.clone();
    missing_source["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind", "source": "/nonexistent/oci-test-source",
        "options": ["rbind", "ro"]
    }));
    cases.push(("source", missing_source.to_string(), "mounts[7].source"));
    let mut unknown = good.clone();
    unknown["linux"]["fooBar"] = json!({"x": 1});
    cases.push(("unknown", unknown.to_string(), "linux.fooBar"));
    let mut unsupported = good.clone();
    unsupported["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    cases.push(("unsupported", unsupported.to_string(), "linux.sysctl"));
    let mut no_root = good.clone();
    no_root["root"]["path"] = json!("/nonexistent/oci-rootfs");
    cases.push(("root", no_root.to_string(), "root.path"));

    for (name, text, needle) in cases {
        let dir = env.tmp.path().join(format!("bundle-bad-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), text).unwrap();
        let id = unique("oci");
        let o = oci(&env, &["create", &id, "--bundle", dir.to_str().unwrap()]);
        assert_one_line_error(&o, needle);
        assert_eq!(o.status.code(), Some(1), "{name}: runc's exit status");
        env.assert_nothing_left();
    }
}

#[test]
fn oci_console_socket_receives_the_pty_master() {
    let env = Env::new();
    let id = unique("oci");
    let mut config = default_config(&env.rootfs, &["sh"]);
    config["process"]["terminal"] = json!(true);
    let bundle = write_bundle(&env, "tty", &config);
    let sock = env.tmp.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                // Just received over SCM_RIGHTS: owned by nobody else.
                fd = fds.first().map(|f| strata_runtime::sys::owned_fd(*f));
            }
        }
        let fd: OwnedFd = fd.expect("a pty master over SCM_RIGHTS");
        fd
    });
    let sock_arg = sock.to_str().unwrap().to_string();
    let (status, err) = create(&env, &id, &bundle, &["--console-socket", &sock_arg]);
    assert!(status.success(), "create: {err}");
    let master = receiver.join().unwrap();
    assert!(oci(&env, &["start", &id]).status.success());
    let mut tty = std::fs::File::from(master);
    tty.write_all(b"echo tty-$((40+2)); [ -t 0 ] && echo is-a-tty\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !(seen.contains("tty-42") && seen.contains("is-a-tty\r\n")) {
        let n = tty.read(&mut buf).unwrap();
        assert!(n > 0, "pty closed; saw {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    tty.write_all(b"exit\n").unwrap();
    wait_status(&env, &id, "stopped");
    assert!(oci(&env, &["delete", &id]).status.success());
    env.assert_nothing_left();
}
