//! `exec`: inline args, --process, --env, --cwd, --user, --cap, --tty, --detach/--pid-file,
//! exit codes, namespaces/cgroup joined, exec into a stopped container.

use std::time::Duration;

use berth_runtime_tests::console::{read_all, ConsoleSocket};
use berth_runtime_tests::*;
use serde_json::json;

fn setup() -> Runtime {
    require_root_and_tools(&[]);
    Runtime::new()
}

const T: Duration = Duration::from_secs(5);

/// A running `sleep 1000` container with `CONFIG_VAR=from-config` in its env.
fn running(rt: &Runtime, prefix: &str) -> (Bundle, String, i32) {
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("CONFIG_VAR=from-config"));
    b.write_config();
    let id = unique_id(prefix);
    let pid = rt.start_detached(&b, &id);
    (b, id, pid)
}

#[test]
fn exec_inline_args_and_exit_code() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "exec");
    let out = rt.exec(&id, &["echo", "hello", "exec"]);
    assert_success(&out, "exec echo");
    assert_eq!(stdout(&out), "hello exec\n");
    let out = rt.exec(&id, &["sh", "-c", "echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stderr(&out), "err\n");
}

#[test]
fn exec_joins_namespaces_and_cgroup() {
    let rt = setup();
    let (_b, id, pid) = running(&rt, "execns");
    let out = rt.exec(
        &id,
        &["sh", "-c", "for n in mnt net pid ipc uts; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup"],
    );
    assert_success(&out, "exec");
    let s = stdout(&out);
    let mut l = s.lines();
    for n in ["mnt", "net", "pid", "ipc", "uts"] {
        assert_eq!(
            l.next().unwrap(),
            ns_link(format!("/proc/{pid}/ns/{n}")),
            "{n}"
        );
    }
    let want = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(l.collect::<Vec<_>>().join("\n") + "\n", want);
}

#[test]
fn exec_inherits_config_env_and_adds_env() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "execenv");
    let out = rt.exec_with(
        &["--env", "EXTRA=1", "--env", "CONFIG_VAR=overridden"],
        &id,
        &["sh", "-c", "echo $EXTRA $CONFIG_VAR $PATH"],
    );
    assert_success(&out, "exec --env");
    assert_eq!(
        stdout(&out),
        "1 overridden /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    let out = rt.exec(&id, &["sh", "-c", "echo $CONFIG_VAR"]);
    assert_eq!(stdout(&out), "from-config\n");
}

#[test]
fn exec_cwd_and_user() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "execcwd");
    let out = rt.exec_with(&["--cwd", "/tmp"], &id, &["pwd"]);
    assert_success(&out, "exec --cwd");
    assert_eq!(stdout(&out), "/tmp\n");
    let out = rt.exec_with(&["--user", "1000:100"], &id, &["sh", "-c", "id -u; id -g"]);
    assert_success(&out, "exec --user");
    assert_eq!(stdout(&out), "1000\n100\n");
    let out = rt.exec_with(
        &["--user", "1000:100", "--additional-gids", "5"],
        &id,
        &["sh", "-c", "grep Groups /proc/self/status"],
    );
    assert_success(&out, "exec --additional-gids");
    assert_eq!(status_field(&stdout(&out), "Groups").unwrap(), "5");
}

#[test]
fn exec_cap_adds_capability() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "execcap");
    let out = rt.exec(&id, &["cat", "/proc/self/status"]);
    let eff = u64::from_str_radix(&status_field(&stdout(&out), "CapEff").unwrap(), 16).unwrap();
    let sys_admin = 1u64 << cap_number("CAP_SYS_ADMIN").unwrap();
    assert_eq!(eff & sys_admin, 0);
    let out = rt.exec_with(
        &["--cap", "CAP_SYS_ADMIN"],
        &id,
        &["cat", "/proc/self/status"],
    );
    assert_success(&out, "exec --cap");
    let s = stdout(&out);
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        let m = u64::from_str_radix(&status_field(&s, k).unwrap(), 16).unwrap();
        assert_ne!(m & sys_admin, 0, "{k} lacks CAP_SYS_ADMIN: {s}");
        // The config's caps are still there.
        assert_ne!(m & (1 << cap_number("CAP_KILL").unwrap()), 0, "{k}");
    }
}

#[test]
fn exec_process_json() {
    let rt = setup();
    let (b, id, _) = running(&rt, "execproc");
    let pj = b.path().join("process.json");
    std::fs::write(
        &pj,
        json!({
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000},
            "args": ["sh", "-c", "echo $PJ; pwd; id -u; grep NoNewPrivs /proc/self/status"],
            "env": ["PATH=/bin", "PJ=from-process-json"],
            "cwd": "/home/user",
            "noNewPrivileges": true
        })
        .to_string(),
    )
    .unwrap();
    let out = rt.exec_with(&["--process", path_str(&pj)], &id, &[]);
    assert_success(&out, "exec --process");
    assert_eq!(
        stdout(&out),
        "from-process-json\n/home/user\n1000\nNoNewPrivs:\t1\n"
    );
}

#[test]
fn exec_detach_pid_file() {
    let rt = setup();
    let (b, id, _) = running(&rt, "execdet");
    let pidfile = b.path().join("exec.pid");
    let out = rt.detached(&[
        "exec",
        "--detach",
        "--pid-file",
        path_str(&pidfile),
        &id,
        "sleep",
        "777",
    ]);
    assert_success(&out, "exec --detach --pid-file");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(pid));
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\x00777\x00");
    let ps: serde_json::Value =
        serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        ps.as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_i64() == Some(pid as i64)),
        "{ps}"
    );
}

#[test]
fn exec_tty_with_console_socket() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "exectty");
    let sock = ConsoleSocket::new();
    let rx = sock.accept_master();
    let out = rt.detached(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        path_str(sock.path()),
        &id,
        "sh",
        "-c",
        "tty; [ -t 1 ] && echo is-tty",
    ]);
    assert_success(&out, "exec --tty --console-socket");
    let master = rx.recv_timeout(T).expect("no pty master").unwrap();
    let text = read_all(master, T);
    let mut l = text.lines();
    assert!(l.next().unwrap().starts_with("/dev/pts/"), "{text:?}");
    assert_eq!(l.next(), Some("is-tty"));
}

#[test]
fn exec_into_stopped_or_missing_container_fails() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "execstop");
    rt.ok(&["kill", &id, "KILL"]);
    assert_eq!(rt.wait_status(&id, "stopped", T), "stopped");
    let out = rt.exec(&id, &["true"]);
    let msg = assert_failure(&out, "exec into stopped");
    assert!(
        msg.contains("stopped") || msg.contains("not running"),
        "{msg}"
    );
    let out = rt.exec(&unique_id("nosuch"), &["true"]);
    assert_failure(&out, "exec into missing container");
}

#[test]
fn exec_missing_binary_fails() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "execnobin");
    let out = rt.exec(&id, &["/no/such/bin"]);
    let msg = assert_failure(&out, "exec missing binary");
    assert!(msg.contains("/no/such/bin"), "{msg}");
    assert_eq!(rt.status(&id), "running");
}

#[test]
fn exec_many_concurrently() {
    let rt = setup();
    let (_b, id, _) = running(&rt, "execpar");
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let rt = &rt;
                let id = &id;
                s.spawn(move || rt.exec(id, &["sh", "-c", &format!("echo {i}")]))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, o) in outs.iter().enumerate() {
        assert_success(o, "parallel exec");
        assert_eq!(stdout(o), format!("{i}\n"));
    }
}

/// Accepts one connection on the seccomp agent socket: the notify fd and the state JSON it carries.
fn agent_receive(
    listener: &std::os::unix::net::UnixListener,
) -> (std::os::fd::OwnedFd, serde_json::Value) {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd};
    let mut pfd = [nix::poll::PollFd::new(
        listener.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut pfd, 10_000u16).unwrap();
    assert_eq!(ready, 1, "no notify fd reached the agent within 10 s");
    let (stream, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the fd was just received with SCM_RIGHTS; the test owns it.
            fd = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let len = msg.bytes;
    let state = serde_json::from_slice(&buf[..len]).unwrap();
    (fd.expect("no fd with the seccomp state"), state)
}

/// A SCMP_ACT_NOTIFY filter: the init's notify fd and, for an exec'd process, its own notify fd
/// both reach the agent at listenerPath, and the agent's answer is what the process sees.
#[test]
fn exec_hands_its_seccomp_notify_fd_to_the_listener() {
    use std::os::fd::AsRawFd;
    let rt = setup();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::busybox();
    b.set_sh("sleep 1000");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "agent-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.write_config();
    let id = unique_id("notify");
    let init_pid = rt.start_detached(&b, &id);
    let (_init_fd, state) = agent_receive(&listener);
    assert_eq!(state["state"]["id"], id.as_str());
    assert_eq!(state["pid"], init_pid);
    assert_eq!(state["metadata"], "agent-test");
    // The exec blocks in mkdir until the agent answers its own fd.
    let bin = rt.bin().to_path_buf();
    let root = rt.root().to_path_buf();
    let id2 = id.clone();
    let exec = std::thread::spawn(move || {
        std::process::Command::new(bin)
            .arg("--root")
            .arg(root)
            .args(["exec", &id2, "mkdir", "/tmp/refused"])
            .output()
            .unwrap()
    });
    let (exec_fd, state) = agent_receive(&listener);
    assert_eq!(state["state"]["id"], id.as_str());
    assert_ne!(state["pid"], init_pid, "the exec'd process's own fd");
    let req = libseccomp::ScmpNotifReq::receive(exec_fd.as_raw_fd()).unwrap();
    let name = req.data.syscall.get_name_by_arch(req.data.arch).unwrap();
    assert!(name == "mkdir" || name == "mkdirat", "{name}");
    libseccomp::ScmpNotifResp::new_error(
        req.id,
        -libc::EROFS,
        libseccomp::ScmpNotifRespFlags::empty(),
    )
    .respond(exec_fd.as_raw_fd())
    .unwrap();
    let out = exec.join().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    rt.ok(&["delete", "--force", &id]);
}
