//! Foreground `run` and `exec`: forward signals to the container's process, relay its terminal, and
//! return its exit code.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::Context;
use crate::linux::sync;
use crate::Result;

/// Blocks all signals (before clone; the child unblocks them) so that none is lost before the signalfd exists.
pub(super) fn block_signals() -> Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None)
        .ctx(|| "blocking signals".into())
}

/// The exit code of a wait status, shell style.
pub(super) fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Waits for our child `pid`, forwarding every signal we receive to it, and relaying the terminal whose
/// master arrives on `console` (the other end of the console socket) if any.
pub(super) fn foreground(pid: i32, console: Option<OwnedFd>) -> Result<i32> {
    let mut mask = SigSet::all();
    mask.remove(Signal::SIGKILL);
    mask.remove(Signal::SIGSTOP);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .ctx(|| "blocking signals".into())?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .ctx(|| "signalfd".into())?;
    let master = match console {
        Some(sock) => Some(receive_master(sock)?),
        None => None,
    };
    let _raw = master.as_ref().and_then(|_| RawTerminal::enter());
    if let Some(m) = &master {
        copy_winsize(m.as_raw_fd());
    }
    let target = Pid::from_raw(pid);
    let mut stdin_open = master.is_some();
    loop {
        // Reap first: the child may already be gone.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(ws @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) => {
                    if p == target {
                        if let Some(m) = &master {
                            drain(m.as_raw_fd());
                        }
                        return Ok(exit_code(ws).unwrap_or(1));
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let mut fds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(m) = &master {
            fds.push(libc::pollfd {
                fd: m.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            if stdin_open {
                fds.push(libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // SAFETY: poll over pollfds we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            while let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    continue;
                }
                if sig == libc::SIGWINCH {
                    if let Some(m) = &master {
                        copy_winsize(m.as_raw_fd());
                        continue;
                    }
                }
                // SAFETY: kill with a pid and signal number.
                unsafe { libc::kill(pid, sig) };
            }
        }
        if let Some(m) = &master {
            if fds[1].revents != 0 && !copy_once(m.as_raw_fd(), 1) {
                // The pty closed: the process is exiting; wait for it.
                let ws = waitpid(target, None).ctx(|| "waiting for the container".into())?;
                return Ok(exit_code(ws).unwrap_or(1));
            }
            if stdin_open && fds.len() > 2 && fds[2].revents != 0 && !copy_once(0, m.as_raw_fd()) {
                stdin_open = false;
            }
        }
    }
}

fn receive_master(sock: OwnedFd) -> Result<OwnedFd> {
    // Reuse the sync channel's fd-passing receive.
    let chan = sync::Channel::from_fd(sock);
    chan.recv_raw_fd()
}

fn copy_once(from: i32, to: i32) -> bool {
    let mut buf = [0u8; 8192];
    // SAFETY: read into a stack buffer of the given length.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return false;
    }
    let mut off = 0;
    while off < n as usize {
        // SAFETY: write from the initialised part of the buffer.
        let w = unsafe { libc::write(to, buf[off..].as_ptr().cast(), n as usize - off) };
        if w <= 0 {
            return false;
        }
        off += w as usize;
    }
    true
}

fn drain(master: i32) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK) };
    while copy_once(master, 1) {}
}

fn copy_winsize(master: i32) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ on descriptors we hold, with a winsize we own.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Puts our own terminal in raw mode while relaying, restoring it on drop.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = nix::sys::termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw)
            .ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = nix::sys::termios::tcsetattr(
            stdin.as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}
