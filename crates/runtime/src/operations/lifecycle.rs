//! `start`, `kill`, `delete`, `pause` and `resume`.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use super::Runtime;
use crate::error::Context;
use crate::hooks::{self, Phase};
use crate::state::{self, ContainerState, Status, FIFO};
use crate::{Error, Result};

/// Options of `kill`.
#[derive(Debug, Clone, Default)]
pub struct KillOptions {
    /// Signal every process in the container's cgroup, not just its init.
    pub all: bool,
}

/// Options of `delete`.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Kill a running container first; succeed if it does not exist.
    pub force: bool,
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a new descriptor we own.
    (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Waits until `pid` (not necessarily our child) has exited, up to `timeout`.
pub(super) fn wait_exit(pid: i32, start: u64, timeout: Duration) -> bool {
    let Some(fd) = pidfd_open(pid) else {
        return true; // already gone
    };
    if !state::process_matches(pid, start) {
        return true;
    }
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i32;
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, left) };
        if r > 0 {
            return true;
        }
        if r == 0 || Instant::now() >= deadline {
            return !state::process_matches(pid, start);
        }
    }
}

impl Runtime {
    /// `start`: releases a created container's init and reports whether its program could be exec'd.
    pub fn start(&self, id: &str) -> Result<()> {
        let (dir, st, _lock) = self.load_locked(id)?;
        let status = st.status(&dir);
        if status != Status::Created {
            return Err(Error::WrongState {
                op: "start",
                id: id.into(),
                status,
            });
        }
        let fifo_path = dir.join(FIFO);
        let fifo = nix::fcntl::open(
            &fifo_path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", fifo_path.display()))?;
        let pidfd = pidfd_open(st.pid);
        // Read until the init's end closes: at exec (close-on-exec) or at its exit after writing an error.
        let mut got = Vec::new();
        let mut f = std::fs::File::from(fifo);
        loop {
            let mut fds = vec![libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(p) = &pidfd {
                fds.push(libc::pollfd {
                    fd: p.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // With a pidfd we can wait as long as the startContainer hooks take: the init's death wakes
            // us. Without one (no pidfd support), give up after a minute of silence.
            let timeout = if pidfd.is_some() { -1 } else { 60_000 };
            // SAFETY: poll over pollfds we own.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n == 0 {
                return Err(Error::Child(format!(
                    "container {id:?} did not start within 60s"
                )));
            }
            let mut buf = [0u8; 4096];
            match f.read(&mut buf) {
                Ok(0) if !got.is_empty() => break,
                Ok(0) => {
                    if fds.len() > 1 && fds[1].revents != 0 {
                        break;
                    }
                    // No writer yet: wait a little for the init to open its end.
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if fds.len() > 1 && fds[1].revents != 0 && fds[0].revents == 0 {
                        break;
                    }
                }
                Err(e) => return Err(e).ctx(|| "reading the exec fifo".into()),
            }
        }
        let _ = std::fs::remove_file(&fifo_path);
        match got.split_first() {
            Some((b'0', [])) => {}
            Some((b'0', rest)) => {
                return Err(Error::Child(String::from_utf8_lossy(rest).into_owned()))
            }
            _ => {
                return Err(Error::Child(format!(
                    "container {id:?} exited before it could be started"
                )))
            }
        }
        let spec = st.spec()?;
        let view = st.view(Status::Running);
        if let Err(e) = hooks::run(spec.hooks().as_ref(), Phase::Poststart, &view) {
            eprintln!("warning: {e}");
        }
        Ok(())
    }

    /// `kill`: sends a signal to the init (or, with `all`, to every process of the container).
    pub fn kill(&self, id: &str, sig: i32, opts: &KillOptions) -> Result<()> {
        let (dir, st) = self.load(id)?;
        let status = st.status(&dir);
        if opts.all {
            let s = Signal::try_from(sig)
                .map_err(|_| Error::Invalid(format!("signal {sig} cannot be sent with --all")))?;
            if status == Status::Paused && s == Signal::SIGKILL {
                st.cgroup.kill_all(s)?;
                return Ok(());
            }
            st.cgroup.kill_all(s)?;
            return Ok(());
        }
        if status == Status::Stopped {
            return Err(Error::WrongState {
                op: "kill",
                id: id.into(),
                status,
            });
        }
        let Some(fd) = pidfd_open(st.pid) else {
            return Err(Error::WrongState {
                op: "kill",
                id: id.into(),
                status: Status::Stopped,
            });
        };
        // The pidfd pins the process: re-check that it is still our init, then signal through it.
        if !state::process_matches(st.pid, st.pid_start) {
            return Err(Error::WrongState {
                op: "kill",
                id: id.into(),
                status: Status::Stopped,
            });
        }
        // SAFETY: pidfd_send_signal with a pidfd we own and no siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("sending {} to {id}", crate::signal::name(sig)));
        }
        Ok(())
    }

    /// `delete`: removes a stopped (or created) container; with `force`, kills a running one first.
    pub fn delete(&self, id: &str, opts: &DeleteOptions) -> Result<()> {
        let (dir, st, lock) = match self.load_locked(id) {
            Ok(x) => x,
            Err(Error::NotFound(_)) if opts.force => return Ok(()),
            Err(e) => return Err(e),
        };
        let status = st.status(&dir);
        match status {
            Status::Stopped => {}
            Status::Created | Status::Creating => self.kill_and_wait(&st)?,
            Status::Running | Status::Paused if opts.force => self.kill_and_wait(&st)?,
            _ => {
                return Err(Error::WrongState {
                    op: "delete",
                    id: id.into(),
                    status,
                })
            }
        }
        if !st.private_pid_ns {
            // Without its own pid namespace the container's other processes outlive its init.
            let _ = st.cgroup.kill_all(Signal::SIGKILL);
        }
        destroy_cgroup(&st)?;
        let spec = st.spec().ok();
        drop(lock);
        std::fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))?;
        if let Some(spec) = spec {
            let view = st.view(Status::Stopped);
            if let Err(e) = hooks::run(spec.hooks().as_ref(), Phase::Poststop, &view) {
                eprintln!("warning: {e}");
            }
        }
        Ok(())
    }

    fn kill_and_wait(&self, st: &ContainerState) -> Result<()> {
        if st.cgroup.is_frozen().unwrap_or(false) {
            st.cgroup.thaw()?;
        }
        if st.private_pid_ns {
            // SAFETY: kill with a pid and signal; the start time was checked by status().
            unsafe { libc::kill(st.pid, libc::SIGKILL) };
        } else {
            st.cgroup.kill_all(Signal::SIGKILL)?;
        }
        if !wait_exit(st.pid, st.pid_start, Duration::from_secs(10)) {
            return Err(Error::Child(format!(
                "container {:?} (pid {}) did not die after SIGKILL",
                st.id, st.pid
            )));
        }
        Ok(())
    }

    /// `pause`: freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let (dir, st, _lock) = self.load_locked(id)?;
        let status = st.status(&dir);
        if status != Status::Running {
            return Err(Error::WrongState {
                op: "pause",
                id: id.into(),
                status,
            });
        }
        Ok(st.cgroup.freeze()?)
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let (dir, st, _lock) = self.load_locked(id)?;
        let status = st.status(&dir);
        if status != Status::Paused {
            return Err(Error::WrongState {
                op: "resume",
                id: id.into(),
                status,
            });
        }
        Ok(st.cgroup.thaw()?)
    }
}

/// Removes the cgroup, retrying while the last processes finish leaving it.
fn destroy_cgroup(st: &ContainerState) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match st.cgroup.destroy() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
