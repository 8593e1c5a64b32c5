//! Helpers shared by the integration tests: filters are only ever loaded in forked children,
//! which report what they observed through their exit status.

#![allow(dead_code)] // each test binary uses a different subset

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use berth_seccomp::CompiledFilter;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::LinuxSeccomp;

/// Exit code of a child whose `load()` failed.
pub const LOAD_FAILED: i32 = 200;
/// Exit code of a child whose body panicked.
pub const PANICKED: i32 = 201;

/// Parses a `linux.seccomp` object.
pub fn spec(value: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(value).unwrap()
}

/// The errno of the last failed call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// 0 when a raw syscall result is a success, else its errno.
pub fn result(rc: libc::c_long) -> i32 {
    if rc < 0 {
        errno()
    } else {
        0
    }
}

/// A forked child; killed and reaped on drop unless [`Child::wait`] reaped it.
pub struct Child {
    pub pid: Pid,
    reaped: bool,
}

impl Child {
    /// Waits up to 20 s for the child; kills it and panics past that.
    pub fn wait(mut self) -> WaitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
                WaitStatus::StillAlive => {
                    assert!(Instant::now() < deadline, "child {} hung", self.pid);
                    std::thread::sleep(Duration::from_millis(5));
                }
                status => {
                    self.reaped = true;
                    return status;
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Forks a child that runs `body` and exits with its result (never returns into the test).
pub fn fork_child(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child only runs `body` (raw syscalls and seccomp loading) and then `_exit`s.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(PANICKED);
            // SAFETY: terminates the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Child {
            pid: child,
            reaped: false,
        },
    }
}

/// Forks a child that loads `filter` (no core dumps), runs `body`, and exits with its result.
pub fn run_filtered(filter: &CompiledFilter, body: impl FnOnce() -> i32) -> WaitStatus {
    fork_child(|| {
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
        match filter.load() {
            Ok(_) => body(),
            Err(_) => LOAD_FAILED,
        }
    })
    .wait()
}

/// The exit code of a child that exited normally; panics on anything else.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        other => panic!("child did not exit normally: {other:?}"),
    }
}

/// Raw `syscall(2)` with up to three arguments.
pub fn sys(nr: libc::c_long, a: u64, b: u64, c: u64) -> libc::c_long {
    // SAFETY: the tests only pass syscalls whose arguments are plain integers or valid pointers.
    unsafe { libc::syscall(nr, a, b, c) }
}
