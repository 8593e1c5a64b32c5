//! SCMP_ACT_NOTIFY end to end: a child loads the filter and hands its notify fd to a real
//! unix-socket agent run by the test, which answers the notified syscall.

mod common;

use std::ffi::CString;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};

use berth_seccomp::{compile, send_to_listener};
use common::*;
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};

/// Waits up to 10 s for `fd` to become readable; panics otherwise.
fn wait_readable(fd: BorrowedFd) {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let ready = poll(&mut fds, 10_000u16).unwrap();
    assert_eq!(ready, 1, "nothing arrived within 10 s");
}

/// Accepts one agent connection and returns the fd and JSON payload it carried.
fn receive_state(listener: &UnixListener) -> (OwnedFd, Value) {
    wait_readable(listener.as_fd());
    let (mut stream, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(received) = c {
                fds.extend(received);
            }
        }
        (msg.bytes, fds)
    };
    assert_eq!(fds.len(), 1, "expected exactly one fd, got {fds:?}");
    // SAFETY: the fd was just received by SCM_RIGHTS and belongs to nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let mut payload = buf[..len].to_vec();
    stream.read_to_end(&mut payload).unwrap(); // the sender closes after one state
    (fd, serde_json::from_slice(&payload).unwrap())
}

#[test]
fn notify_fd_reaches_the_agent_which_answers_the_syscall() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let target = dir.path().join("made-by-child");
    let path = CString::new(target.as_os_str().as_bytes()).unwrap();
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": "meta-1",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap();
    assert!(filter.uses_notify());
    let container = json!({
        "ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": 0, "bundle": "/b"
    });

    let child = fork_child(|| {
        let Ok(Some(fd)) = filter.load() else {
            return LOAD_FAILED;
        };
        let pid = nix::unistd::getpid().as_raw();
        if send_to_listener(&socket, fd.as_fd(), &container, Some("meta-1"), pid).is_err() {
            return 97;
        }
        drop(fd);
        let at_fdcwd = libc::AT_FDCWD as i64 as u64;
        result(sys(
            libc::SYS_mkdirat,
            at_fdcwd,
            path.as_ptr() as u64,
            0o755,
        ))
    });

    let (notify_fd, state) = receive_state(&listener);
    assert_eq!(state["ociVersion"], "1.0.2");
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["pid"], json!(child.pid.as_raw()));
    assert_eq!(state["metadata"], "meta-1");
    assert_eq!(state["state"], container);

    wait_readable(notify_fd.as_fd());
    let req = ScmpNotifReq::receive(notify_fd.as_raw_fd()).unwrap();
    assert_eq!(req.pid, child.pid.as_raw() as u32);
    let name = req.data.syscall.get_name_by_arch(req.data.arch).unwrap();
    assert_eq!(name, "mkdirat");
    ScmpNotifResp::new_error(req.id, -libc::ENOTBLK, ScmpNotifRespFlags::empty())
        .respond(notify_fd.as_raw_fd())
        .unwrap();

    assert_eq!(exit_code(child.wait()), libc::ENOTBLK);
    assert!(!target.exists(), "the agent refused mkdirat, yet it ran");
}

#[test]
fn notify_with_tsync_loads_and_returns_an_fd() {
    let filter = compile(&spec(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/unused-agent.sock",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap();
    assert!(filter.uses_notify());
    let status = run_filtered(&filter, || 0);
    assert_eq!(exit_code(status), 0);
    let child = fork_child(|| match filter.load() {
        // A notify fd is a real, open descriptor in the child.
        Ok(Some(fd)) => {
            let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFD);
            match flags {
                Ok(flags) if flags & libc::FD_CLOEXEC != 0 => 0,
                _ => 98,
            }
        }
        _ => 99,
    });
    assert_eq!(exit_code(child.wait()), 0);
}

#[test]
fn send_to_listener_fails_when_the_agent_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    // The path exists, nobody listens. (Not a bound-then-dropped listener: a child forked by
    // another test at that moment would inherit it and keep it listening.)
    std::fs::write(&socket, "").unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let err = send_to_listener(&socket, a.as_fd(), &json!({}), None, 1).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("agent.sock") && msg.contains("connecting"),
        "{msg}"
    );
}
