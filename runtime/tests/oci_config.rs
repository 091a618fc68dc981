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
        "prestart": [hook(&env, "prestart", false)],
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
    assert_eq!(read_order(), "prestart\ncreateRuntime\ncreateContainer\n");
    let pid = state(&env, &id)["pid"].as_i64().unwrap();
    let o = oci(&env, &["start", &id]);
    assert!(o.status.success(), "start: {}", common::stderr(&o));
    assert_eq!(
        read_order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n"
    );
    let o = oci(&env, &["delete", "--force", &id]);
    assert!(o.status.success(), "delete: {}", common::stderr(&o));
    assert_eq!(
        read_order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );
    for (name, status) in [
        ("prestart", "creating"),
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
fn oci_sysctl_applies_inside_the_container_only() {
    let env = Env::new();
    let id = unique("oci");
    let mut config = default_config(
        &env.rootfs,
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
        ],
    );
    config["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "0"});
    let bundle = write_bundle(&env, "sysctl", &config);
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    let o = env
        .strata()
        .args(["run", &id, "--bundle", bundle.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o).trim(), "0");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap(),
        host,
        "the host's value is untouched"
    );
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
    cases.push((
        "syntax",
        "{\"ociVersion\": \"1.0.2\", \"process\": {".into(),
        "syntax error",
    ));
    let mut wrong_type = good.clone();
    wrong_type["process"]["user"]["uid"] = json!("zero");
    cases.push(("type", wrong_type.to_string(), "process.user.uid"));
    let mut missing_source = good.clone();
    missing_source["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "destination": "/data", "type": "bind", "source": "/nonexistent/oci-test-source",
            "options": ["rbind", "ro"]
        }));
    cases.push(("source", missing_source.to_string(), "mounts[7].source"));
    let mut unknown = good.clone();
    unknown["linux"]["fooBar"] = json!({"x": 1});
    cases.push(("unknown", unknown.to_string(), "linux.fooBar"));
    let mut unsupported = good.clone();
    unsupported["linux"]["intelRdt"] = json!({"closID": "strata-test"});
    cases.push(("unsupported", unsupported.to_string(), "linux.intelRdt"));
    let mut host_sysctl = good.clone();
    host_sysctl["linux"]["sysctl"] = json!({"vm.swappiness": "10"});
    cases.push((
        "sysctl",
        host_sysctl.to_string(),
        "linux.sysctl.vm.swappiness",
    ));
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
    // The pty has this size before the command runs (nobody else sets it here).
    config["process"]["consoleSize"] = json!({"height": 25, "width": 81});
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
    // `tty` names the pty as the container sees it: one of its own devpts instance, as under runc.
    // (The terminal echoes the line typed: `E""ND` keeps the echo from looking like the last output.)
    tty.write_all(
        b"echo tty-$((40+2)); [ -t 0 ] && echo is-a-tty; echo at-$(tty); echo SIZE=$(stty size 2>&1)=E\"\"ND\n",
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains("=END\r\n") {
        let n = tty.read(&mut buf).unwrap();
        assert!(n > 0, "pty closed; saw {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    for want in [
        "tty-42",
        "is-a-tty\r\n",
        "at-/dev/pts/0\r\n",
        "SIZE=25 81=END\r\n",
    ] {
        assert!(seen.contains(want), "no {want:?} on the terminal: {seen:?}");
    }
    tty.write_all(b"exit\n").unwrap();
    wait_status(&env, &id, "stopped");
    assert!(oci(&env, &["delete", &id]).status.success());
    env.assert_nothing_left();
}

/// Runs `mkdir /tmp/NAME` under `seccomp` and returns (status, stdout+stderr); the rootfs's /tmp shows
/// whether the directory was made.
fn mkdir_under(env: &Env, name: &str, seccomp: Value, nnp: bool) -> (bool, String) {
    let id = unique("oci");
    let script = format!("mkdir /tmp/{name} 2>&1; echo status=$?");
    let mut config = default_config(&env.rootfs, &["sh", "-c", &script]);
    config["linux"]["seccomp"] = seccomp;
    config["process"]["noNewPrivileges"] = json!(nnp);
    let bundle = write_bundle(env, name, &config);
    let o = env
        .strata()
        .args(["run", &id, "--bundle", bundle.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "run: {}", common::stderr(&o));
    (
        env.rootfs.join("tmp").join(name).exists(),
        common::stdout(&o),
    )
}

#[test]
fn oci_seccomp_profiles_are_enforced() {
    let env = Env::new();
    // A deny list: everything allowed but mkdir, which fails with the profile's errno (EACCES).
    let deny = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    });
    let (made, out) = mkdir_under(&env, "denied", deny, true);
    assert!(!made && out.contains("Permission denied"), "{out}");

    // An allow list in Docker's shape (default ERRNO), here every syscall of the kernel headers but
    // mkdir/mkdirat, with noNewPrivileges false as Docker sends it; unknown names are skipped.
    let header = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").expect(
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h (linux-libc-dev) lists the syscalls",
    );
    let mut names: Vec<String> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define __NR_"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "mkdir" && *n != "mkdirat")
        .map(str::to_string)
        .collect();
    names.push("no_such_syscall_oci".into());
    let allow = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    });
    let (made, out) = mkdir_under(&env, "allowlist", allow.clone(), false);
    assert!(!made && out.contains("Operation not permitted"), "{out}");

    // The same list allowing mkdir too makes the directory: the filter is not just denying everything.
    let mut all = allow;
    all["syscalls"][0]["names"]
        .as_array_mut()
        .unwrap()
        .extend([json!("mkdir"), json!("mkdirat")]);
    let (made, out) = mkdir_under(&env, "allowed", all, false);
    assert!(made && out.contains("status=0"), "{out}");
    env.assert_nothing_left();
}
