//! `strata run -t`: the command runs on a pty of the container's own devpts; strata passes the caller's
//! window size on (at start and on SIGWINCH), relays input and output, puts a terminal caller in raw mode
//! while the container runs and restores it after, and exits with the container's status.

mod common;
use common::Env;

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use nix::sys::termios::{LocalFlags, tcgetattr};

/// Everything read from the pty master so far, filled by a thread.
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Screen {
    fn new(master: std::fs::File) -> Screen {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let fill = buf.clone();
        std::thread::spawn(move || {
            let mut master = master;
            let mut chunk = [0u8; 4096];
            // Ends with EIO once every slave fd is closed.
            while let Ok(n) = master.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                fill.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Screen(buf)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on the terminal; it shows {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn tty_gives_the_command_a_terminal_of_the_callers_size_and_relays_it() {
    let env = Env::new();
    let size = |rows, cols| Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size(33, 99)), None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(
        before
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    );

    let script = "tty; stty size; echo TERM=$TERM; read x; echo got:$x; \
                  trap 'stty size; exit 7' WINCH; echo ready; while :; do sleep 0.05; done";
    let child = env
        .strata()
        .args(["run", "-it", "--rm", "--rootfs"])
        .arg(&env.rootfs)
        .args(["--", "/bin/sh", "-c", script])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let master = std::fs::File::from(pty.master);
    let mut keys = master.try_clone().unwrap();
    let screen = Screen::new(master);

    screen.wait_for("33 99");
    let shown = screen.text();
    assert!(shown.starts_with("/dev/pts/0"), "not on a pty: {shown:?}");
    assert!(shown.contains("TERM=xterm"), "{shown:?}");
    // While the container runs the caller's terminal is raw: no echo, no line editing of its own.
    let during = tcgetattr(&pty.slave).unwrap();
    assert!(
        !during
            .local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO)
    );

    keys.write_all(b"abc\r").unwrap();
    screen.wait_for("got:abc");
    screen.wait_for("ready");

    // A new size reaches the container with strata's SIGWINCH.
    strata_runtime::sys::set_window_size(std::os::fd::AsFd::as_fd(&keys), (40, 120)).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    screen.wait_for("40 120");
    let out = common::wait_child(child);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the container's status; the terminal shows {:?}",
        screen.text()
    );

    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(
        after.local_flags, before.local_flags,
        "the caller's terminal was not restored"
    );
    env.assert_nothing_left();
}

#[test]
fn exec_tty_relays_a_terminal_into_a_running_container() {
    let env = Env::new();
    let name = common::unique("tty");
    let run = env.run(&["-d", "--name", &name], &["/bin/sleep", "60"]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    let pty = openpty(
        Some(&Winsize {
            ws_row: 21,
            ws_col: 66,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .unwrap();
    let child = env
        .strata()
        .args(["exec", "-it", &name, "--", "/bin/sh", "-c"])
        .arg("tty; stty size; echo TERM=$TERM; exit 4")
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let screen = Screen::new(std::fs::File::from(pty.master));
    let out = common::wait_child(child);
    screen.wait_for("TERM=xterm");
    let shown = screen.text();
    assert_eq!(out.status.code(), Some(4), "{shown:?}");
    assert!(
        shown.starts_with("/dev/pts/") && shown.contains("21 66"),
        "{shown:?}"
    );
    let rm = env.strata().args(["rm", "-f", &name]).output().unwrap();
    assert!(rm.status.success(), "{}", common::stderr(&rm));
    env.assert_nothing_left();
}
