//! Terminals: `--console-socket` hands the pty master over SCM_RIGHTS; consoleSize; pty input.

use std::io::Write;
use std::time::Duration;

use berth_runtime_tests::console::{read_all, ConsoleSocket};
use berth_runtime_tests::*;
use serde_json::json;

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

const T: Duration = Duration::from_secs(5);

fn tty_bundle(script: &str, size: Option<(u32, u32)>) -> Bundle {
    let mut b = Bundle::busybox();
    b.set_sh(script);
    b.config["process"]["terminal"] = json!(true);
    if let Some((h, w)) = size {
        b.config["process"]["consoleSize"] = json!({"height": h, "width": w});
    }
    b.write_config();
    b
}

#[test]
fn console_socket_create_start() {
    let rt = setup();
    let b = tty_bundle(
        "tty; stty size; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty",
        Some((33, 111)),
    );
    let sock = ConsoleSocket::new();
    let rx = sock.accept_master();
    let id = unique_id("console");
    let out = rt.detached(&[
        "create",
        "--console-socket",
        path_str(sock.path()),
        "--bundle",
        path_str(b.path()),
        &id,
    ]);
    assert_success(&out, "create --console-socket");
    let master = rx.recv_timeout(T).expect("no pty master received").unwrap();
    rt.ok(&["start", &id]);
    let text = read_all(master, T);
    assert_eq!(text, "/dev/pts/0\n33 111\nall-tty\n");
}

#[test]
fn console_socket_run_detach() {
    let rt = setup();
    let b = tty_bundle("tty", None);
    let sock = ConsoleSocket::new();
    let rx = sock.accept_master();
    let id = unique_id("condet");
    let out = rt.detached(&[
        "run",
        "--detach",
        "--console-socket",
        path_str(sock.path()),
        "--bundle",
        path_str(b.path()),
        &id,
    ]);
    assert_success(&out, "run -d --console-socket");
    let master = rx.recv_timeout(T).expect("no pty master received").unwrap();
    assert_eq!(read_all(master, T), "/dev/pts/0\n");
}

#[test]
fn console_input_reaches_container() {
    let rt = setup();
    let b = tty_bundle("stty -echo; read line; echo got:$line", None);
    let sock = ConsoleSocket::new();
    let rx = sock.accept_master();
    let id = unique_id("conin");
    let out = rt.detached(&[
        "create",
        "--console-socket",
        path_str(sock.path()),
        "--bundle",
        path_str(b.path()),
        &id,
    ]);
    assert_success(&out, "create --console-socket");
    let master = rx.recv_timeout(T).unwrap().unwrap();
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    rt.ok(&["start", &id]);
    // Let `stty -echo` run before typing.
    std::thread::sleep(Duration::from_millis(300));
    w.write_all(b"hello-pty\n").unwrap();
    let text = read_all(master, T);
    assert!(text.ends_with("got:hello-pty\n"), "{text:?}");
}

#[test]
fn terminal_without_console_socket_fails_when_detached() {
    let rt = setup();
    let b = tty_bundle("true", None);
    let id = unique_id("nosock");
    let out = rt.try_create(&b, &id);
    let msg = assert_failure(&out, "create terminal:true without --console-socket");
    assert!(msg.contains("console") || msg.contains("tty"), "{msg}");
    assert!(rt.container_ids().is_empty());
}

#[test]
fn console_socket_for_non_terminal_fails() {
    let rt = setup();
    let b = Bundle::sh("true");
    let sock = ConsoleSocket::new();
    let out = rt.detached(&[
        "create",
        "--console-socket",
        path_str(sock.path()),
        "--bundle",
        path_str(b.path()),
        &unique_id("sockterm"),
    ]);
    let msg = assert_failure(&out, "--console-socket with terminal:false");
    assert!(msg.contains("console") || msg.contains("terminal"), "{msg}");
}

#[test]
fn foreground_run_relays_the_terminal_and_exit_code() {
    // `run` in the foreground with terminal:true and no console socket: berth-runtime makes the
    // console socket itself and relays the pty to its own stdout (as `runc run` does).
    let rt = setup();
    let b = tty_bundle("tty; stty size; echo relayed; exit 3", Some((33, 77)));
    let mut cmd = rt.cmd(&["run", "--bundle", path_str(b.path()), &unique_id("fgtty")]);
    cmd.stdin(std::process::Stdio::null());
    let out = output_within(cmd, T);
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit code passed through: {text} {:?}",
        out
    );
    assert!(text.contains("/dev/pts/0\n"), "{text}");
    assert!(text.contains("33 77\n"), "{text}");
    assert!(text.contains("relayed\n"), "{text}");
    assert!(rt.container_ids().is_empty(), "run deletes the container");
}
